"""Deploy a synthesized Warden template into moto: the local runtime runs what the stack deploys.

This is a small CloudFormation for the resource types Warden uses: KMS keys, S3 buckets, DynamoDB
tables, SNS topics, SSM parameters, Lambda functions (routed to `functions/<job>/handler.py` by
their `WARDEN_FUNCTION` variable), ECS clusters and task definitions (their tasks run as child
processes, local/ecs.py) and Step Functions state machines (their definitions rendered from the
template, so moto's interpreter runs the same JSON that deploys). IAM, log groups, layers, policies
and alarms have no local behaviour and are recorded as skipped.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.aws import ACCOUNT, REGION, LocalAws, create_function, render_definition
from local.ecs import register_task_definition
from warden.config.stage import StageConfig
from warden.settings import Settings

# Created in this order, so a reference always points at something that exists.
ORDER = [
    "AWS::KMS::Key",
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::SNS::Topic",
    "AWS::SSM::Parameter",
    "AWS::Lambda::Function",
    "AWS::ECS::Cluster",
    "AWS::ECS::TaskDefinition",
    "AWS::StepFunctions::StateMachine",
]


@dataclass
class Deployment:
    stage: str
    template: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[tuple[str, str], str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    extra_environment: dict[str, str] = field(default_factory=dict)

    def physical(self, resource_type: str) -> dict[str, str]:
        """Logical id → physical id (Ref) of every deployed resource of a type."""
        return {k: self.refs[k] for k, v in self.template["Resources"].items()
                if v["Type"] == resource_type and k in self.refs}

    def function_named(self, job: str) -> str:
        """The deployed function name of `functions/<job>`."""
        for logical_id, resource in self.template["Resources"].items():
            if resource["Type"] == "AWS::Lambda::Function":
                variables = resource["Properties"].get("Environment", {}).get("Variables", {})
                if variables.get("WARDEN_FUNCTION") == job:
                    return self.refs[logical_id]
        raise LookupError(f"the template has no function for job {job!r}")

    def function_environment(self, job: str) -> dict[str, str]:
        """The environment the deployed function of `functions/<job>` runs with (resolved)."""
        for resource in self.template["Resources"].values():
            if resource["Type"] == "AWS::Lambda::Function":
                variables = resource["Properties"].get("Environment", {}).get("Variables", {})
                if variables.get("WARDEN_FUNCTION") == job:
                    return {**_Resolver(self).value(variables), **self.extra_environment}
        raise LookupError(f"the template has no function for job {job!r}")

    def settings(self, job: str) -> Settings:
        """The settings `functions/<job>` reads at its cold start: for tests calling the library."""
        return Settings.from_env(self.function_environment(job))

    def outputs(self) -> dict[str, str]:
        """The stack's outputs, resolved to the local resources (what the CLI reads)."""
        resolver = _Resolver(self)
        return {name: str(resolver.value(output["Value"]))
                for name, output in self.template.get("Outputs", {}).items()}

    def state_machine_arn(self, logical_prefix: str) -> str:
        matches = [v for k, v in self.physical("AWS::StepFunctions::StateMachine").items()
                   if k.startswith(logical_prefix)]
        if len(matches) != 1:
            raise LookupError(f"expected one state machine starting {logical_prefix!r}, found {len(matches)}")
        return matches[0]


def synthesize_stage(stage: StageConfig, outdir: Path | None = None) -> dict[str, Any]:
    """Synthesize the WardenStack of `stage` (cdk-nag on, as always) and return its template, with
    its nested stacks (the targets' group stacks, infra/targets.py) inlined: their templates are read
    from the cloud assembly and their Parameters resolved to what the stage's stack passes, so
    `deploy_template` creates their resources (SSM parameters, ...) like the stage's own."""
    from infra.assembly import stage_template
    from infra.stack import build_app, stack_id

    outdir = outdir or Path(tempfile.mkdtemp(prefix="warden-synth-"))
    stage_json = stage.model_dump(mode="json", exclude={"name"})
    app, _ = build_app({"stages": {stage.name: stage_json}, "stage": stage.name}, outdir=str(outdir))
    assembly = app.synth()
    return stage_template(assembly.directory, stack_id(stage))


def _name(stage: str, logical_id: str, limit: int = 63) -> str:
    return re.sub(r"[^a-z0-9-]", "", f"warden-{stage}-{logical_id.lower()}")[:limit]


class _Resolver:
    def __init__(self, deployment: Deployment) -> None:
        self.d = deployment

    def ref(self, logical_id: str, attribute: str | None = None) -> str:
        pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws",
                  "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": f"Warden-{self.d.stage}"}
        if attribute is None and logical_id in pseudo:
            return pseudo[logical_id]
        if attribute is None and logical_id in self.d.refs:
            return self.d.refs[logical_id]
        if attribute is not None and (logical_id, attribute) in self.d.attrs:
            return self.d.attrs[(logical_id, attribute)]
        if logical_id in self.d.skipped:  # no local behaviour: a stable, recognisable placeholder
            return f"local-{logical_id}" + (f"-{attribute}" if attribute else "")
        raise LookupError(f"reference to {logical_id}{'.' + attribute if attribute else ''} before it exists")

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "Ref" in node:
            return self.ref(node["Ref"])
        if "Fn::GetAtt" in node:
            logical_id, attribute = node["Fn::GetAtt"]
            return self.ref(logical_id, attribute)
        if "Fn::Join" in node:
            sep, parts = node["Fn::Join"]
            return sep.join(str(self.value(p)) for p in parts)
        if "Fn::Sub" in node:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
            extra = {} if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][1]

            def sub(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in extra:
                    return str(self.value(extra[name]))
                logical_id, _, attribute = name.partition(".")
                return self.ref(logical_id, attribute or None)

            return re.sub(r"\$\{([^}]+)\}", sub, text)
        if any(key.startswith("Fn::") for key in node):
            raise ValueError(f"unsupported intrinsic: {list(node)}")
        return {k: self.value(v) for k, v in node.items()}


def local_function_environment() -> dict[str, str]:
    """What the local runtime adds to every function's environment: in AWS the PostgreSQL client
    tools ship with the function, one tree per major version (docs/postgres-tools.md); locally the
    tree links the embedded server's tools (18) and Debian's 15 where installed."""
    return {"WARDEN_PG_BIN_DIR": str(local_pg_tools())}


def local_pg_tools(root: Path | None = None) -> Path:
    """`<root>/<major>/bin` → each local PostgreSQL build's bin directory."""
    import subprocess

    from local.postgres import DEBIAN_PG15_BIN, debian_pg15_available, embedded_bin_dir

    root = root or Path(__file__).resolve().parent.parent / ".build" / "pg-tools"
    bins = [embedded_bin_dir()] + ([DEBIAN_PG15_BIN] if debian_pg15_available() else [])
    for bin_dir in bins:
        version = subprocess.run([str(bin_dir / "pg_dump"), "--version"], capture_output=True, text=True,
                                 check=True).stdout
        match = re.search(r"\(PostgreSQL\)\s+(\d+)", version)
        if match is None:
            continue
        link = root / match.group(1) / "bin"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink() or link.resolve() != bin_dir.resolve():
            link.unlink(missing_ok=True)
            link.symlink_to(bin_dir)
    return root


def deploy_template(aws: LocalAws, template: Mapping[str, Any], stage: str,
                    extra_environment: Mapping[str, str] | None = None) -> Deployment:
    """Create the template's resources in moto; returns the physical ids and attributes."""
    deployment = Deployment(stage=stage, template=dict(template))
    deployment.extra_environment = dict(local_function_environment() if extra_environment is None
                                        else extra_environment)
    resolver = _Resolver(deployment)
    resources = template["Resources"]
    nested = sorted(k for k, v in resources.items() if v["Type"] == "AWS::CloudFormation::Stack")
    if nested:  # their resources would silently be missing
        raise ValueError(f"nested stacks {nested[:3]}...: deploy the template synthesize_stage returns "
                         "(infra.assembly.stage_template inlines them)")
    for logical_id, resource in resources.items():
        if resource["Type"] not in ORDER:
            deployment.skipped[logical_id] = resource["Type"]
    for resource_type in ORDER:
        for logical_id, resource in resources.items():
            if resource["Type"] == resource_type:
                _create(aws, deployment, resolver, logical_id, resource)
    return deployment


def _create(aws: LocalAws, d: Deployment, r: _Resolver, logical_id: str, resource: dict[str, Any]) -> None:
    props = resource.get("Properties", {})
    kind = resource["Type"]
    if kind == "AWS::KMS::Key":
        key = aws.client("kms").create_key(Description=props.get("Description", logical_id))["KeyMetadata"]
        d.refs[logical_id], d.attrs[(logical_id, "Arn")] = key["KeyId"], key["Arn"]
    elif kind == "AWS::S3::Bucket":
        name = props.get("BucketName") or _name(d.stage, logical_id)
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        d.refs[logical_id], d.attrs[(logical_id, "Arn")] = name, f"arn:aws:s3:::{name}"
    elif kind == "AWS::DynamoDB::Table":
        name = props.get("TableName") or _name(d.stage, logical_id, 255)
        table = aws.client("dynamodb").create_table(
            TableName=name, KeySchema=props["KeySchema"], AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )["TableDescription"]
        d.refs[logical_id], d.attrs[(logical_id, "Arn")] = name, table["TableArn"]
    elif kind == "AWS::SNS::Topic":
        arn = aws.client("sns").create_topic(Name=props.get("TopicName") or _name(d.stage, logical_id, 256))["TopicArn"]
        d.refs[logical_id], d.attrs[(logical_id, "TopicArn")] = arn, arn
    elif kind == "AWS::SSM::Parameter":
        name = r.value(props["Name"])
        aws.client("ssm").put_parameter(Name=name, Value=r.value(props["Value"]), Type=props.get("Type", "String"),
                                        Overwrite=True)
        d.refs[logical_id] = name
    elif kind == "AWS::Lambda::Function":
        variables = {**r.value(props.get("Environment", {}).get("Variables", {})), **d.extra_environment}
        job = variables.get("WARDEN_FUNCTION")
        if not job:
            d.skipped[logical_id] = f"{kind} without WARDEN_FUNCTION"
            return
        name = props.get("FunctionName") or _name(d.stage, logical_id, 64)
        arn = create_function(aws, name, job, variables, memory_size=int(props.get("MemorySize", 128)),
                              timeout=int(props.get("Timeout", 3)))
        d.refs[logical_id], d.attrs[(logical_id, "Arn")] = name, arn
    elif kind == "AWS::ECS::Cluster":  # Ref: the name; Fn::GetAtt Arn: the ARN
        name = props.get("ClusterName") or _name(d.stage, logical_id, 255)
        arn = aws.client("ecs").create_cluster(clusterName=name)["cluster"]["clusterArn"]
        d.refs[logical_id], d.attrs[(logical_id, "Arn")] = name, arn
    elif kind == "AWS::ECS::TaskDefinition":  # Ref and Fn::GetAtt TaskDefinitionArn: the ARN
        containers = [_container_definition(r, c, d.extra_environment) for c in props.get("ContainerDefinitions", [])]
        platform = props.get("RuntimePlatform")
        storage = props.get("EphemeralStorage")
        arn = register_task_definition(
            aws.client("ecs"), props.get("Family") or _name(d.stage, logical_id, 255), containers,
            cpu=str(r.value(props["Cpu"])) if "Cpu" in props else None,
            memory=str(r.value(props["Memory"])) if "Memory" in props else None,
            runtimePlatform=None if not platform else {
                "cpuArchitecture": platform.get("CpuArchitecture", "X86_64"),
                "operatingSystemFamily": platform.get("OperatingSystemFamily", "LINUX")},
            ephemeralStorage={"sizeInGiB": int(storage["SizeInGiB"])} if storage else None,
        )
        d.refs[logical_id], d.attrs[(logical_id, "TaskDefinitionArn")] = arn, arn
    elif kind == "AWS::StepFunctions::StateMachine":
        definition = render_definition({"Resources": {logical_id: resource}}, logical_id, r.ref)
        name = props.get("StateMachineName") or _name(d.stage, logical_id, 80)
        arn = aws.client("stepfunctions").create_state_machine(
            name=name, definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}",
            type=props.get("StateMachineType", "STANDARD"),
        )["stateMachineArn"]
        d.refs[logical_id], d.attrs[(logical_id, "Arn")] = arn, arn
        d.attrs[(logical_id, "Name")] = name


def _container_definition(r: _Resolver, container: dict[str, Any],
                          extra_environment: Mapping[str, str]) -> dict[str, Any]:
    """An `AWS::ECS::TaskDefinition` container definition as RegisterTaskDefinition takes it: what
    the local task runs (entry point, command, environment with the local additions, as the
    functions get them) and its sizes; logging, secrets and roles have no local behaviour."""
    environment = {e["Name"]: str(e.get("Value", "")) for e in r.value(container.get("Environment", []))}
    environment.update(extra_environment)
    if "WARDEN_TASK_CODE" in environment:  # the layer zips in the CDK asset bucket: locally the task
        environment["WARDEN_TASK_CODE"] = ""  # runs the library from this checkout instead
    definition: dict[str, Any] = {
        "name": container["Name"],
        "image": str(r.value(container["Image"])),
        "environment": [{"name": k, "value": v} for k, v in environment.items()],
        "essential": bool(container.get("Essential", True)),
    }
    for key, name in (("EntryPoint", "entryPoint"), ("Command", "command")):
        if key in container:
            definition[name] = [str(part) for part in r.value(container[key])]
    for key, name in (("Cpu", "cpu"), ("Memory", "memory"), ("MemoryReservation", "memoryReservation")):
        if key in container:
            definition[name] = int(r.value(container[key]))
    return definition
