"""cdk-nag (v3) wiring: the AwsSolutions pack is a policy-validation plugin on the app.

Every finding is fixed or acknowledged next to the resource it is about, with `acknowledge()`,
which insists on a reason. Synthesis fails on any unacknowledged finding (warnings included): the
CDK raises in-process, and `unacknowledged_findings()` reads the validation report for callers
(app.py) that must turn it into an exit status whatever mode the CDK runs in.
"""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import Acknowledgment, App, CfnResource, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

REPORT_FILE = "validation-report.json"
PACK = "AwsSolutions"
_MIN_REASON = 20


def enable_nag(app: App, *, verbose: bool = True) -> AwsSolutionsChecks:
    """Run the AwsSolutions checks on every stack of `app` at synthesis."""
    checks = AwsSolutionsChecks(app, verbose=verbose)
    Validations.of(app).add_plugins(checks)
    return checks


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (e.g. `AwsSolutions-IAM5[Resource::*]`) on `scope` and below.

    Acknowledge on the narrowest construct that owns the finding; the reason is the audit trail.
    """
    if len(reason.strip()) < _MIN_REASON:
        raise ValueError(f"acknowledging {rule} on {scope.node.path} needs a real reason, got {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def ref(resource: IConstruct, attribute: str | None = None) -> str:
    """How cdk-nag spells a reference to `resource` in a finding: `<LogicalId>` or `<LogicalId.Arn>`.

    `resource` is a CfnResource or an L2 construct whose default child is one.
    """
    cfn = resource if isinstance(resource, CfnResource) else resource.node.default_child
    if not isinstance(cfn, CfnResource):
        raise TypeError(f"{resource.node.path} is not a CloudFormation resource")
    stack = Stack.of(cfn)
    logical_id = stack.resolve(stack.get_logical_id(cfn))
    return f"<{logical_id}.{attribute}>" if attribute else f"<{logical_id}>"


def spelling(stack: Stack, value: str) -> str:
    """How cdk-nag writes a (possibly tokenized) ARN in a finding: `{"Ref": X}` becomes `<X>`."""
    resolved = stack.resolve(value)
    if isinstance(resolved, str):
        return resolved
    parts = resolved["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else f"<{p['Ref']}>" for p in parts)


def unacknowledged_findings(outdir: str | Path) -> list[str]:
    """The findings that fail the build, from the validation report of a synthesized assembly.

    Every unacknowledged cdk-nag violation (warnings too), and anything another validation plugin
    concluded "failure" on. One line per rule and construct; [] when there is no report.
    """
    report_path = Path(outdir) / REPORT_FILE
    if not report_path.is_file():
        return []
    report = json.loads(report_path.read_text())
    lines = []
    for plugin in report.get("pluginReports", []):
        is_nag = plugin.get("pluginName") == PACK
        if not is_nag and plugin.get("conclusion") != "failure":
            continue
        error = (plugin.get("metadata") or {}).get("error")
        if error:
            lines.append(f"{plugin.get('pluginName')}: {error}")
        for violation in plugin.get("violations", []):
            summary = violation.get("description", "").split(". ")[0]
            for construct in violation.get("violatingConstructs") or [{}]:
                where = construct.get("constructPath") or "?"
                lines.append(f"{violation.get('ruleName')} at {where}: {summary}")
    return lines
