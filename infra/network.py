"""Private networking of a stage (`StageConfig.network`, warden.config.network).

The VPC is an existing one, found by id with a context lookup: the lookup result is checked in
(cdk.context.json), so synthesis needs no AWS credentials and no network. The functions that talk to
databases (`vpc=True` in the job table, infra/jobs.py) run in the configured private subnets with
one security group, `warden-<stage>-db-clients`, that has no ingress and egress only to the
databases' ports and to HTTPS of the VPC endpoints. The endpoints (gateways for S3 and DynamoDB,
interface endpoints with private DNS for the rest) are created here unless the stage reuses the
VPC's own; interface endpoints get a group of their own that admits HTTPS from the function group
only. No NAT gateway is made or needed.

`WardenStack` makes one `Network` before its functions; `StageFunctions` (infra/jobs.py) gives each job
that runs in the VPC its `placement()`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import nag
from infra.config import ConfigError
from warden import names
from warden.config.network import GATEWAY_ENDPOINTS, INTERFACE_ENDPOINTS, NetworkConfig
from warden.config.stage import StageConfig

REPO = Path(__file__).resolve().parent.parent
CDK_CONTEXT_JSON = REPO / "cdk.context.json"
HTTPS = 443
_DUMMY_PREFIX_LIST = "pl-xxxxxxxx"  # what CDK answers for a prefix list lookup it does not have
_RECORD_LOOKUPS = ("run `cdk synth -c stage=<stage>` once with credentials for the stage's account (the CDK CLI "
                   "records its lookups in cdk.context.json) and commit cdk.context.json")
_GATEWAYS = {"s3": ec2.GatewayVpcEndpointAwsService.S3, "dynamodb": ec2.GatewayVpcEndpointAwsService.DYNAMODB}
# Lambda manages the network interfaces of a function in a VPC with the function's own role.
_ENI_MANAGE = ["ec2:AssignPrivateIpAddresses", "ec2:DeleteNetworkInterface", "ec2:UnassignPrivateIpAddresses"]
_ENI_DESCRIBE = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]


def read_lookup_context(path: Path = CDK_CONTEXT_JSON) -> dict[str, Any]:
    """The checked-in results of context lookups (cdk.context.json), as the CDK CLI would pass them;
    {} without the file. `python app.py` reads it itself, so synthesis stays offline."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a JSON object")
    return data


@dataclass(frozen=True)
class Placement:
    """Where one function runs: what `lambda_.Function` takes for a VPC."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_groups: list[ec2.ISecurityGroup]
    network: Network


class Network(Construct):
    """The stage's VPC (looked up), the function security group and the VPC endpoints.

    Attributes: `config`, `vpc`, `subnets` (the selected private subnets), `security_group` (the
    functions'), `endpoint_security_group` (None when no interface endpoint is created),
    `gateway_endpoints` / `interface_endpoints` (created ones, by service name).
    """

    def __init__(self, scope: Construct, id: str, *, stage: StageConfig) -> None:
        super().__init__(scope, id)
        if stage.network is None:
            raise ValueError(f"stage {stage.name!r} has no network")
        self.stage = stage
        self.config: NetworkConfig = stage.network
        self.vpc = ec2.Vpc.from_lookup(self, "Vpc", vpc_id=self.config.vpc_id)
        self._check_lookup()
        self.subnets = self._select_subnets()
        self.subnet_selection = ec2.SubnetSelection(subnets=self.subnets)
        self.security_group = self._build_function_group()
        # The databases' own groups admit this one (README "Networking and TLS"): operators need its id.
        CfnOutput(self, names.OUTPUT_DB_CLIENTS_SECURITY_GROUP, value=self.security_group.security_group_id,
                  description="Security group of the Warden functions that connect to databases")
        self.endpoint_security_group: ec2.SecurityGroup | None = None
        self.gateway_endpoints: dict[str, ec2.GatewayVpcEndpoint] = {}
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        self._build_endpoints()

    # -- lookups ---------------------------------------------------------------------------------

    def _check_lookup(self) -> None:
        # Without the lookup in context, CDK answers with a dummy VPC and asks the CLI to look it up:
        # offline, that must be an error that says what to add, not a template for the wrong VPC.
        if self.vpc.vpc_id != self.config.vpc_id:
            stack = Stack.of(self)
            key = (f"vpc-provider:account={stack.account}:filter.vpc-id={self.config.vpc_id}:"
                   f"region={stack.region}:returnAsymmetricSubnets=true")
            raise ConfigError(
                f"stage {self.stage.name!r}: network.vpc_id={self.config.vpc_id!r} is not in cdk.context.json "
                f"(key {key!r}); {_RECORD_LOOKUPS}")

    def _select_subnets(self) -> list[ec2.ISubnet]:
        private = [*self.vpc.private_subnets, *self.vpc.isolated_subnets]
        name = self.stage.name
        if self.config.subnet_ids:
            by_id = {s.subnet_id: s for s in private}
            public = {s.subnet_id for s in self.vpc.public_subnets}
            chosen = []
            for subnet_id in self.config.subnet_ids:
                if subnet_id in public:
                    raise ConfigError(f"stage {name!r}: network.subnet_ids: {subnet_id} is a public subnet of "
                                      f"{self.config.vpc_id}; the functions run in private subnets")
                if subnet_id not in by_id:
                    raise ConfigError(f"stage {name!r}: network.subnet_ids: {subnet_id} is not a subnet of "
                                      f"{self.config.vpc_id} (its private subnets: {', '.join(sorted(by_id))})")
                chosen.append(by_id[subnet_id])
            return chosen
        if self.config.subnet_group:
            try:
                group = _subnet_group(self.vpc, self.config.subnet_group)
            except ValueError as err:
                raise ConfigError(f"stage {name!r}: network.subnet_group={self.config.subnet_group!r}: {err}") from None
            if any(s.subnet_id not in {p.subnet_id for p in private} for s in group):
                raise ConfigError(f"stage {name!r}: network.subnet_group={self.config.subnet_group!r} is a public "
                                  "subnet group; the functions run in private subnets")
            return group
        if not private:
            raise ConfigError(f"stage {name!r}: {self.config.vpc_id} has no private subnets for the functions")
        return private

    # -- security groups -------------------------------------------------------------------------

    def _build_function_group(self) -> ec2.ISecurityGroup:
        if self.config.security_group_id:
            # The operator's group: used as it is (its rules are theirs, documented in the README).
            return ec2.SecurityGroup.from_security_group_id(self, "DbClients", self.config.security_group_id,
                                                            mutable=False)
        group = ec2.SecurityGroup(
            self, "DbClients", vpc=self.vpc, allow_all_outbound=False,
            security_group_name=f"warden-{self.stage.name}-db-clients",
            description=f"Warden {self.stage.name} functions that connect to databases (no ingress)",
        )
        engines = {t.engine.value for t in self.stage.targets}
        cidrs = self.config.database_cidrs or [self.vpc.vpc_cidr_block]
        for port in self.config.ports_for(engines):
            for cidr in cidrs:
                group.add_egress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(port), f"database port {port}")
        return group

    def _https_egress(self, peer: ec2.IPeer, why: str) -> None:
        if isinstance(self.security_group, ec2.SecurityGroup):
            self.security_group.add_egress_rule(peer, ec2.Port.tcp(HTTPS), why)

    # -- endpoints -------------------------------------------------------------------------------

    def _build_endpoints(self) -> None:
        config = self.config
        for service in GATEWAY_ENDPOINTS:
            if config.endpoint_mode(service) == "create":
                self.gateway_endpoints[service] = ec2.GatewayVpcEndpoint(
                    self, f"{service.title()}Gateway", vpc=self.vpc, service=_GATEWAYS[service],
                    subnets=[self.subnet_selection])
        # Gateway endpoints route to the service's public prefix list, created or reused alike.
        region = Stack.of(self).region
        for service in GATEWAY_ENDPOINTS:
            prefix_list = ec2.PrefixList.from_lookup(self, f"{service.title()}PrefixList",
                                                     prefix_list_name=f"com.amazonaws.{region}.{service}")
            if prefix_list.prefix_list_id == _DUMMY_PREFIX_LIST:  # the lookup is not in cdk.context.json
                raise ConfigError(f"stage {self.stage.name!r}: cdk.context.json lacks the lookup of the managed "
                                  f"prefix list com.amazonaws.{region}.{service}; {_RECORD_LOOKUPS}")
            self._https_egress(ec2.Peer.prefix_list(prefix_list.prefix_list_id), f"HTTPS to {service} (gateway)")
        created = [s for s in INTERFACE_ENDPOINTS if config.endpoint_mode(s) == "create"]
        if len(created) < len(INTERFACE_ENDPOINTS):
            # Reused interface endpoints are the VPC's own: somewhere in its CIDR.
            self._https_egress(ec2.Peer.ipv4(self.vpc.vpc_cidr_block), "HTTPS to the VPC's own endpoints")
        if not created:
            return
        group = ec2.SecurityGroup(
            self, "Endpoints", vpc=self.vpc, allow_all_outbound=False,
            security_group_name=f"warden-{self.stage.name}-endpoints",
            description=f"Warden {self.stage.name} VPC interface endpoints: HTTPS from the Warden functions",
        )
        group.add_ingress_rule(self.security_group, ec2.Port.tcp(HTTPS), "HTTPS from the Warden functions")
        self._https_egress(group, "HTTPS to Warden's interface endpoints")
        self.endpoint_security_group = group
        # An interface endpoint takes at most one subnet per availability zone.
        per_zone: dict[str, ec2.ISubnet] = {}
        for subnet in self.subnets:
            per_zone.setdefault(subnet.availability_zone, subnet)
        endpoint_subnets = ec2.SubnetSelection(subnets=list(per_zone.values()))
        for service in created:
            self.interface_endpoints[service] = ec2.InterfaceVpcEndpoint(
                self, f"{_construct_name(service)}Endpoint", vpc=self.vpc,
                service=ec2.InterfaceVpcEndpointAwsService(service),
                subnets=endpoint_subnets, security_groups=[group], private_dns_enabled=True, open=False)

    # -- functions -------------------------------------------------------------------------------

    def placement(self) -> Placement:
        """Where a function that talks to databases runs: the selected subnets, the function group."""
        return Placement(vpc=self.vpc, subnets=self.subnet_selection, security_groups=[self.security_group],
                         network=self)

    def grant_network_interfaces(self, scope: Construct, role: iam.IRole) -> iam.Policy:
        """What Lambda needs of a function's role to attach it to the VPC: create network interfaces
        in the selected subnets with the function group, and manage / describe them. Its own policy,
        so the one unavoidable wildcard is acknowledged on it and nowhere else."""
        stack = Stack.of(scope)

        def arn(resource: str, name: str) -> str:
            return stack.format_arn(service="ec2", resource=resource, resource_name=name,
                                    arn_format=ArnFormat.SLASH_RESOURCE_NAME)

        interfaces = arn("network-interface", "*")
        policy = iam.Policy(scope, "VpcAccessPolicy", roles=[role], statements=[
            iam.PolicyStatement(actions=["ec2:CreateNetworkInterface"], resources=[
                interfaces, *(arn("subnet", s.subnet_id) for s in self.subnets),
                arn("security-group", self.security_group.security_group_id)]),
            iam.PolicyStatement(actions=_ENI_MANAGE, resources=[interfaces]),
            iam.PolicyStatement(actions=_ENI_DESCRIBE, resources=["*"]),
        ])
        nag.acknowledge(
            policy, "AwsSolutions-IAM5[Resource::*]",
            "ec2:DescribeNetworkInterfaces and ec2:DescribeSubnets support no resource-level permissions; "
            "Lambda calls them to attach the function to its VPC subnets.")
        nag.acknowledge(
            policy, f"AwsSolutions-IAM5[Resource::{nag.spelling(stack, interfaces)}]",
            "Lambda creates the function's network interfaces at run time, so their ids are unknown here; "
            "creation is limited to the stage's subnets and security group, and the actions are listed.")
        return policy


def _construct_name(service: str) -> str:
    """`kms` → `Kms`, `ecr.api` → `EcrApi` (the endpoint's construct, so its logical id)."""
    return service.replace(".", " ").title().replace(" ", "")


def _subnet_group(vpc: ec2.IVpc, name: str) -> list[ec2.ISubnet]:
    """The subnets of the VPC's group `name` (the lookup's `aws-cdk:subnet-name` tag)."""
    try:
        return list(vpc.select_subnets(subnet_group_name=name).subnets)
    except Exception as err:  # jsii raises a plain error, naming the groups there are
        raise ValueError(str(err).splitlines()[0]) from None
