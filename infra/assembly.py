"""Reading a synthesized stage back as one template: the stage's stack with its nested stacks
(infra/targets.py, the group stacks) inlined, as CloudFormation would deploy them together.

Each `AWS::CloudFormation::Stack` resource names its template in the cloud assembly (metadata
`aws:asset:path`); its resources join the parent's, each `Ref` to one of its Parameters becomes the
value the parent passes, each parent `Fn::GetAtt [<nested>, Outputs.<name>]` becomes the output's
value, and what the nested stack resource waits for (`DependsOn`), its resources wait for. The
local runtime (local/deploy.py) deploys this view into moto; the infrastructure tests read it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

NESTED_STACK = "AWS::CloudFormation::Stack"
ASSET_PATH = "aws:asset:path"


def read_template(outdir: str | Path, artifact_id: str) -> dict[str, Any]:
    """The template of stack `artifact_id` in the cloud assembly at `outdir`, as synthesized."""
    return dict(json.loads((Path(outdir) / f"{artifact_id}.template.json").read_text()))


def nested_templates(template: dict[str, Any], outdir: str | Path) -> dict[str, dict[str, Any]]:
    """The nested stacks' templates by the logical id of their stack resource (one level)."""
    found = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource["Type"] == NESTED_STACK:
            found[logical_id] = json.loads((Path(outdir) / _template_file(logical_id, resource, outdir)).read_text())
    return found


def _template_file(logical_id: str, resource: dict[str, Any], outdir: str | Path) -> str:
    """Where the assembly holds a nested stack's template: its `aws:asset:path` metadata, else the
    file asset whose hash names the object of its TemplateURL (`.../<hash>.json`)."""
    path = resource.get("Metadata", {}).get(ASSET_PATH)
    if path:
        return str(path)
    url = json.dumps(resource.get("Properties", {}).get("TemplateURL", ""))
    match = re.search(r"/([0-9a-f]{64})\.json", url)
    if match:
        for assets in Path(outdir).glob("*.assets.json"):
            asset = json.loads(assets.read_text()).get("files", {}).get(match.group(1))
            if asset is not None:
                return str(asset["source"]["path"])
    raise LookupError(f"nested stack {logical_id}: its template is not in the cloud assembly at {outdir}")


def stage_template(outdir: str | Path, artifact_id: str) -> dict[str, Any]:
    """The stage's template with every nested stack inlined (recursively): what the stage deploys."""
    return inline_nested_stacks(read_template(outdir, artifact_id), outdir)


def inline_nested_stacks(template: dict[str, Any], outdir: str | Path) -> dict[str, Any]:
    """`template` with its nested stacks' resources in place of their stack resources."""
    result = json.loads(json.dumps(template))  # a deep copy
    resources: dict[str, Any] = result.setdefault("Resources", {})
    for stack_id, nested in nested_templates(template, outdir).items():
        nested = inline_nested_stacks(nested, outdir)
        stack = resources.pop(stack_id)
        given = stack.get("Properties", {}).get("Parameters", {})
        missing = sorted(set(nested.get("Parameters", {})) - set(given))
        if missing:
            raise ValueError(f"nested stack {stack_id}: parameters {missing} not given by the parent")
        inlined = _substitute(nested.get("Resources", {}), refs=given, outputs={})
        waits = _as_list(stack.get("DependsOn", []))
        for logical_id, resource in inlined.items():
            if logical_id in resources:
                raise ValueError(f"nested stack {stack_id}: logical id {logical_id} is also the parent's")
            if waits:
                resource["DependsOn"] = sorted({*_as_list(resource.get("DependsOn", [])), *waits})
            resources[logical_id] = resource
        outputs = {name: out["Value"] for name, out in nested.get("Outputs", {}).items()}
        for key in ("Resources", "Outputs"):
            if key in result:
                result[key] = _substitute(result[key], refs={}, outputs={stack_id: outputs})
        for other in resources.values():  # whatever waited for the nested stack waits for its resources
            depends = _as_list(other.get("DependsOn", []))
            if stack_id in depends:
                other["DependsOn"] = sorted({*(d for d in depends if d != stack_id), *inlined})
        for key in ("Conditions", "Mappings"):
            if nested.get(key):
                result.setdefault(key, {}).update(nested[key])
    return result


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _substitute(node: Any, *, refs: dict[str, Any], outputs: dict[str, dict[str, Any]]) -> Any:
    if isinstance(node, list):
        return [_substitute(n, refs=refs, outputs=outputs) for n in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"} and node["Ref"] in refs:
        return json.loads(json.dumps(refs[node["Ref"]]))
    if set(node) == {"Fn::GetAtt"}:
        target, attribute = node["Fn::GetAtt"]
        if target in outputs and str(attribute).startswith("Outputs."):
            return json.loads(json.dumps(outputs[target][attribute.removeprefix("Outputs.")]))
    return {k: _substitute(v, refs=refs, outputs=outputs) for k, v in node.items()}
