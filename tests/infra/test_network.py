"""Private networking (infra/network.py, warden.network_config): the database-facing functions run
in the configured private subnets of a looked-up VPC with their own security group, everything they
call is reached through VPC endpoints (created or reused), no NAT; the VPC comes from the checked-in
cdk.context.json, so synthesis is offline; bad network configuration is refused with the field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Environment, Stack
from infra_helpers import Synthesized, as_list, logical_id, references, resources

from infra.assembly import stage_template
from infra.config import ConfigError, parse_stages
from infra.nag import unacknowledged_findings
from infra.network import Network, read_lookup_context
from infra.stack import build_app
from warden.config.network import DB_FUNCTIONS, GATEWAY_ENDPOINTS, INTERFACE_ENDPOINTS
from warden.config.stage import StageConfig

pytestmark = pytest.mark.infra

ACCOUNT = "123456789012"
VPC = "vpc-0f3a9c2e7b1d45a86"
PRIVATE = ["subnet-0a11b22c33d44e55f", "subnet-0b66c77d88e99f001"]  # group "Private" (isolated)
DATABASE = ["subnet-0f9e8d7c6b5a49382", "subnet-0e8d7c6b5a4938271"]  # group "Database" (isolated)
PUBLIC = "subnet-0c1d2e3f4a5b6c7d8"
PREFIX_LISTS = {"s3": "pl-6da54004", "dynamodb": "pl-6fa54006"}
TARGETS = [{"name": "graph", "engine": "neo4j", "secret_name": "warden/x/graph"},
           {"name": "orders", "engine": "postgres", "secret_name": "warden/x/orders"}]
OPERATOR_GROUP = "sg-0123456789abcdef0"

# Two more stages against the same looked-up VPC: everything reused (the operator's own group,
# a subnet group by name) and a per-service mix with the default subnet choice.
VARIANTS = {
    "reuse": {"account": ACCOUNT, "targets": TARGETS, "network": {
        "vpc_id": VPC, "subnet_group": "Private", "security_group_id": OPERATOR_GROUP, "endpoints": "reuse"}},
    "mixed": {"account": ACCOUNT, "targets": TARGETS[1:], "network": {
        "vpc_id": VPC, "endpoints": {"s3": "reuse", "kms": "reuse"}, "database_cidrs": ["10.40.64.0/23"]}},
}


@pytest.fixture(scope="module")
def staging(synthesized: Synthesized) -> dict[str, Any]:
    """cdk.json's staging stage: the example stage with a network (endpoints created)."""
    return synthesized.template(synthesized.stacks["staging"])


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory, dependency_layer_dir: Path) -> dict[str, dict[str, Any]]:
    outdir = tmp_path_factory.mktemp("cdk.out.network")
    app, stacks = build_app({"stages": VARIANTS}, outdir=str(outdir), dependency_layer_dir=dependency_layer_dir)
    app.synth()  # raises on any unacknowledged cdk-nag finding
    assert unacknowledged_findings(outdir) == []
    return {name: {"stack": stack, "template": stage_template(outdir, stack.artifact_id)}
            for name, stack in stacks.items()}


def _functions(synthesized: Synthesized, stage: str) -> dict[str, dict[str, Any]]:
    """Each job's Lambda function properties."""
    stack = synthesized.stacks[stage]
    template = synthesized.template(stack)
    return {job: template["Resources"][logical_id(stack, fn.function)]["Properties"]
            for job, fn in stack.functions.items()}


def _group_id(template: dict[str, Any], name: str) -> str:
    (lid,) = [lid for lid, r in resources(template, "AWS::EC2::SecurityGroup").items()
              if r["Properties"]["GroupName"] == name]
    return lid


def _egress(template: dict[str, Any], group: str) -> set[tuple[int, str]]:
    """(port, destination) of every egress rule of `group`: inline and separate rules."""
    rules = list(template["Resources"][group]["Properties"].get("SecurityGroupEgress", []))
    rules += [r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupEgress").values()
              if references(r["Properties"]["GroupId"], group)]
    found = set()
    for rule in rules:
        if rule.get("Description") == "Disallow all traffic":  # CDK's marker for "no egress"
            continue
        assert rule["IpProtocol"] == "tcp" and rule["FromPort"] == rule["ToPort"]
        peer = (rule.get("CidrIp") or rule.get("DestinationPrefixListId")
                or "sg:" + rule["DestinationSecurityGroupId"]["Fn::GetAtt"][0])
        found.add((rule["FromPort"], peer))
    return found


def _ingress(template: dict[str, Any], group: str) -> list[dict[str, Any]]:
    rules = list(template["Resources"][group]["Properties"].get("SecurityGroupIngress", []))
    return rules + [r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()
                    if references(r["Properties"]["GroupId"], group)]


def _endpoints(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """VPC endpoints by service (the last part of com.amazonaws.<region>.<service>)."""
    found = {}
    for r in resources(template, "AWS::EC2::VPCEndpoint").values():
        name = r["Properties"]["ServiceName"]
        service = (name if isinstance(name, str) else "".join(p for p in name["Fn::Join"][1] if isinstance(p, str)))
        found[service.split(".", 3)[3]] = r["Properties"]  # com.amazonaws.<region>.<service>: ecr.api too
    return found


# -- placement ------------------------------------------------------------------------------------


def test_database_functions_run_in_the_configured_private_subnets_with_the_function_group(
        synthesized: Synthesized, staging: dict[str, Any]) -> None:
    group = _group_id(staging, "warden-staging-db-clients")
    functions = _functions(synthesized, "staging")
    in_vpc = {job for job, props in functions.items() if "VpcConfig" in props}
    assert in_vpc == set(DB_FUNCTIONS) & set(functions)
    assert {"backup", "health", "recovery", "maintenance", "license_check", "remediate"} <= in_vpc
    for job in in_vpc:
        config = functions[job]["VpcConfig"]
        assert config["SubnetIds"] == PRIVATE, job
        assert config["SecurityGroupIds"] == [{"Fn::GetAtt": [group, "GroupId"]}], job


def test_functions_that_only_call_aws_stay_out_of_the_vpc(synthesized: Synthesized) -> None:
    functions = _functions(synthesized, "staging")
    for job in ("verify", "prune", "report"):
        assert "VpcConfig" not in functions[job], job


def test_a_stage_without_network_has_no_vpc_resources(synthesized: Synthesized, dev: dict[str, Any]) -> None:
    assert not any("VpcConfig" in props for props in _functions(synthesized, "dev").values())
    assert not [r for r in dev["Resources"].values() if r["Type"].startswith("AWS::EC2::")]


def test_no_vpc_nat_gateway_or_internet_gateway_is_created(staging: dict[str, Any],
                                                           variants: dict[str, dict[str, Any]]) -> None:
    for template in (staging, *(v["template"] for v in variants.values())):
        for kind in ("AWS::EC2::VPC", "AWS::EC2::NatGateway", "AWS::EC2::InternetGateway", "AWS::EC2::EIP",
                     "AWS::EC2::Subnet", "AWS::EC2::Route"):
            assert not resources(template, kind), kind


def test_each_vpc_function_role_may_create_interfaces_only_in_its_subnets_and_group(
        synthesized: Synthesized, staging: dict[str, Any]) -> None:
    stack = synthesized.stacks["staging"]
    group = _group_id(staging, "warden-staging-db-clients")
    for job in DB_FUNCTIONS:
        if job not in stack.functions:
            continue
        fn = stack.functions[job]
        role = logical_id(stack, fn.role)
        function = staging["Resources"][logical_id(stack, fn.function)]
        (lid, policy), = [(lid, p) for lid, p in resources(staging, "AWS::IAM::Policy").items()
                          if "VpcAccessPolicy" in lid and {"Ref": role} in p["Properties"]["Roles"]]
        assert lid in function["DependsOn"], "the role must have its permissions before Lambda attaches to the VPC"
        statements = {tuple(as_list(s["Action"])): as_list(s["Resource"])
                      for s in policy["Properties"]["PolicyDocument"]["Statement"]}
        create = statements[("ec2:CreateNetworkInterface",)]
        interfaces = f"arn:aws:ec2:eu-west-1:{ACCOUNT}:network-interface/*"
        assert create[:3] == [interfaces, *(f"arn:aws:ec2:eu-west-1:{ACCOUNT}:subnet/{s}" for s in PRIVATE)]
        assert references(create[3], group) and len(create) == 4
        assert statements[("ec2:AssignPrivateIpAddresses", "ec2:DeleteNetworkInterface",
                           "ec2:UnassignPrivateIpAddresses")] == [interfaces]
        assert statements[("ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets")] == ["*"]
    for job in ("verify", "prune", "report"):
        role = logical_id(stack, stack.functions[job].role)
        assert not [lid for lid, p in resources(staging, "AWS::IAM::Policy").items()
                    if "VpcAccessPolicy" in lid and {"Ref": role} in p["Properties"]["Roles"]], job


# -- security groups ------------------------------------------------------------------------------


def test_the_function_group_has_no_ingress_and_egress_only_to_databases_and_endpoints(staging: dict[str, Any]) -> None:
    group = _group_id(staging, "warden-staging-db-clients")
    endpoints = _group_id(staging, "warden-staging-endpoints")
    assert _ingress(staging, group) == []
    # cdk.json's staging targets are Neo4j and PostgreSQL: Bolt and PostgreSQL ports into the VPC.
    assert _egress(staging, group) == {
        (5432, "10.40.0.0/16"), (7687, "10.40.0.0/16"),
        (443, PREFIX_LISTS["s3"]), (443, PREFIX_LISTS["dynamodb"]), (443, f"sg:{endpoints}")}


def test_the_endpoint_group_admits_https_from_the_function_group_only(staging: dict[str, Any]) -> None:
    group = _group_id(staging, "warden-staging-db-clients")
    endpoints = _group_id(staging, "warden-staging-endpoints")
    (rule,) = _ingress(staging, endpoints)
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443)
    assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [group, "GroupId"]}
    assert _egress(staging, endpoints) == set()


def test_database_ports_follow_the_stages_engines_and_cidrs(variants: dict[str, dict[str, Any]]) -> None:
    template = variants["mixed"]["template"]
    group = _group_id(template, "warden-mixed-db-clients")
    ports = {(port, peer) for port, peer in _egress(template, group) if port != 443}
    assert ports == {(5432, "10.40.64.0/23")}  # PostgreSQL only; the configured database CIDR


# -- endpoints ------------------------------------------------------------------------------------


def test_every_endpoint_is_created_with_private_dns_in_the_function_subnets(staging: dict[str, Any]) -> None:
    endpoints = _endpoints(staging)
    assert set(endpoints) == set(GATEWAY_ENDPOINTS) | set(INTERFACE_ENDPOINTS)
    assert {"secretsmanager", "kms", "monitoring", "logs", "sns", "states", "sts", "rds"} <= set(endpoints)
    group = _group_id(staging, "warden-staging-endpoints")
    for service in INTERFACE_ENDPOINTS:
        props = endpoints[service]
        assert props["VpcEndpointType"] == "Interface" and props["PrivateDnsEnabled"] is True, service
        assert props["SubnetIds"] == PRIVATE and props["VpcId"] == VPC, service
        assert props["SecurityGroupIds"] == [{"Fn::GetAtt": [group, "GroupId"]}], service
    for service in GATEWAY_ENDPOINTS:
        props = endpoints[service]
        assert props["VpcEndpointType"] == "Gateway", service
        # The route tables of the function subnets (from cdk.context.json).
        assert props["RouteTableIds"] == ["rtb-0a1b2c3d4e5f6a7b8", "rtb-0b2c3d4e5f6a7b8c9"], service


def test_reuse_creates_no_endpoints_and_the_operators_group_is_used_untouched(
        variants: dict[str, dict[str, Any]]) -> None:
    stack, template = variants["reuse"]["stack"], variants["reuse"]["template"]
    assert not resources(template, "AWS::EC2::VPCEndpoint")
    assert not resources(template, "AWS::EC2::SecurityGroup")
    assert not resources(template, "AWS::EC2::SecurityGroupEgress")
    assert not resources(template, "AWS::EC2::SecurityGroupIngress")
    for job in DB_FUNCTIONS:
        if job in stack.functions:
            props = template["Resources"][logical_id(stack, stack.functions[job].function)]["Properties"]
            # subnet_group "Private" of the looked-up VPC
            assert props["VpcConfig"] == {"SecurityGroupIds": [OPERATOR_GROUP], "SubnetIds": PRIVATE}, job


def test_endpoints_can_be_reused_per_service(variants: dict[str, dict[str, Any]]) -> None:
    template = variants["mixed"]["template"]
    endpoints = _endpoints(template)
    assert set(endpoints) == (set(GATEWAY_ENDPOINTS) | set(INTERFACE_ENDPOINTS)) - {"s3", "kms"}
    group = _group_id(template, "warden-mixed-db-clients")
    https = {peer for port, peer in _egress(template, group) if port == 443}
    # Reused interface endpoints live in the VPC; gateways are reached by prefix list either way.
    assert {"10.40.0.0/16", PREFIX_LISTS["s3"], PREFIX_LISTS["dynamodb"]} <= https


def test_without_a_subnet_choice_every_private_subnet_is_used_and_endpoints_take_one_per_zone(
        variants: dict[str, dict[str, Any]]) -> None:
    stack, template = variants["mixed"]["stack"], variants["mixed"]["template"]
    props = template["Resources"][logical_id(stack, stack.functions["backup"].function)]["Properties"]
    assert sorted(props["VpcConfig"]["SubnetIds"]) == sorted(PRIVATE + DATABASE)
    subnets = _endpoints(template)["secretsmanager"]["SubnetIds"]
    assert len(subnets) == 2 and set(subnets) <= set(PRIVATE + DATABASE)  # one per availability zone


# -- offline lookups and bad configuration --------------------------------------------------------


def test_the_vpc_comes_from_checked_in_context_so_synthesis_is_offline(synthesized: Synthesized) -> None:
    context = read_lookup_context()
    key = f"vpc-provider:account={ACCOUNT}:filter.vpc-id={VPC}:region=eu-west-1:returnAsymmetricSubnets=true"
    assert context[key]["vpcId"] == VPC
    manifest = json.loads((synthesized.outdir / "manifest.json").read_text())
    assert not manifest.get("missing"), "a lookup CDK still wants would need AWS at synth time"


def _network_stack(stage: dict[str, Any], context: dict[str, Any] | None = None) -> None:
    (config,) = parse_stages({"x": stage}).values()
    app = App(context=read_lookup_context() if context is None else context)
    stack = Stack(app, "Probe", env=Environment(account=config.account, region=config.region))
    Network(stack, "Network", stage=config)


def _stage(**network: Any) -> dict[str, Any]:
    return {"account": ACCOUNT, "targets": TARGETS, "network": {"vpc_id": VPC, **network}}


@pytest.mark.parametrize("network, message", [
    ({"subnet_ids": [PUBLIC]}, f"network.subnet_ids: {PUBLIC} is a public subnet of {VPC}"),
    ({"subnet_ids": ["subnet-0123456789abcdef0"]},
     r"subnet-0123456789abcdef0 is not a subnet of .*its private subnets"),
    ({"subnet_group": "Public"}, r"network.subnet_group='Public' is a public subnet group"),
    ({"subnet_group": "Nope"}, r"network.subnet_group='Nope': .*no subnet groups? .*Nope"),
    ({"vpc_id": "vpc-0123456789abcdef0"}, r"network.vpc_id='vpc-0123456789abcdef0' is not in cdk.context.json \(key "
                                          r"'vpc-provider:account=123456789012:filter.vpc-id=vpc-0123456789abcdef0"),
], ids=["public subnet", "subnet of another vpc", "public group", "unknown group", "vpc not looked up"])
def test_a_network_that_does_not_fit_the_looked_up_vpc_is_refused(network: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _network_stack(_stage(**network))


def test_a_missing_prefix_list_lookup_is_refused_not_guessed() -> None:
    context = {k: v for k, v in read_lookup_context().items() if "dynamodb" not in k}
    with pytest.raises(ConfigError, match="lacks the lookup of the managed prefix list "
                       r"com\.amazonaws\.eu-west-1\.dynamodb"):
        _network_stack(_stage(), context)


BAD_NETWORKS = {
    "vpc id shape": ({"vpc_id": "vpc-123"}, r"network\.vpc_id: String should match pattern"),
    "subnet id shape": ({"vpc_id": VPC, "subnet_ids": ["subnet_1"]}, r"network\.subnet_ids\[0\]: String should match"),
    "subnets without vpc": ({"subnet_ids": PRIVATE}, r"network\.vpc_id: Field required"),
    "subnets and group": ({"vpc_id": VPC, "subnet_ids": PRIVATE, "subnet_group": "Private"},
                          r"give subnet_ids or subnet_group, not both"),
    "repeated subnet": ({"vpc_id": VPC, "subnet_ids": [PRIVATE[0], PRIVATE[0]]}, r"subnet_ids repeats"),
    "endpoint mode": ({"vpc_id": VPC, "endpoints": "none"}, r"network\.endpoints\.literal\['create','reuse'\]"),
    "unknown endpoint": ({"vpc_id": VPC, "endpoints": {"ec2messages": "create"}},
                         r"unknown endpoint service\(s\) \['ec2messages'\]"),
    "security group shape": ({"vpc_id": VPC, "security_group_id": "default"}, r"network\.security_group_id: String"),
    "port out of range": ({"vpc_id": VPC, "database_ports": [70000]}, r"network\.database_ports\[0\]: .*less than"),
    "bad cidr": ({"vpc_id": VPC, "database_cidrs": ["10.0.0.0/33"]}, r"'10\.0\.0\.0/33' is not an IPv4 CIDR"),
    "typo": ({"vpc_id": VPC, "subnets": PRIVATE}, r"network\.subnets: Extra inputs are not permitted"),
}


@pytest.mark.parametrize("network, message", BAD_NETWORKS.values(), ids=BAD_NETWORKS.keys())
def test_a_bad_network_is_an_error_naming_the_field(network: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_stages({"dev": {"account": ACCOUNT, "network": network}})


def test_a_network_needs_the_stages_account() -> None:
    with pytest.raises(ConfigError, match=re.escape(f"network.vpc_id={VPC!r} needs the stage's account")):
        parse_stages({"dev": {"network": {"vpc_id": VPC}}})


def test_endpoint_modes_default_to_create_per_service() -> None:
    config = StageConfig(name="x", account=ACCOUNT, network={"vpc_id": VPC, "endpoints": {"kms": "reuse"}}).network
    assert config is not None
    assert config.endpoint_mode("kms") == "reuse" and config.endpoint_mode("sts") == "create"


def test_the_function_group_id_is_a_stack_output_for_the_databases_ingress_rules(staging: dict[str, Any]) -> None:
    group = _group_id(staging, "warden-staging-db-clients")
    (output,) = [o for key, o in staging["Outputs"].items() if key.startswith("NetworkDbClientsSecurityGroup")]
    assert output["Value"] == {"Fn::GetAtt": [group, "GroupId"]}


def test_app_py_stops_with_the_missing_lookup_and_writes_no_template(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import app

    out = tmp_path / "cdk.out"
    monkeypatch.setenv("CDK_OUTDIR", str(out))
    stages = json.dumps({"qa": _stage(vpc_id="vpc-0123456789abcdef0")})
    assert app.main(["-c", f"stages={stages}"]) == 2
    assert "network.vpc_id='vpc-0123456789abcdef0' is not in cdk.context.json" in capsys.readouterr().err
    assert not out.exists() or not any(out.glob("*.template.json"))
