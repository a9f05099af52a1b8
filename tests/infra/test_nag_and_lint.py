"""cdk-nag gates synthesis, and the synthesized templates pass cfn-lint without errors."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3
from cfnlint.api import ManualArgs, lint
from infra_helpers import Synthesized

from infra.nag import acknowledge, enable_nag, unacknowledged_findings

pytestmark = pytest.mark.infra


def test_the_app_synthesizes_with_no_unacknowledged_cdk_nag_findings(synthesized: Synthesized) -> None:
    # The fixture's synth would have raised; the report on disk agrees.
    assert unacknowledged_findings(synthesized.outdir) == []
    print(f"synthesis of {len(synthesized.all_stacks)} stacks took {synthesized.seconds:.1f} s")


def test_an_unacknowledged_finding_fails_synthesis_and_is_reported(tmp_path) -> None:
    # Given an app with cdk-nag on and a bucket with neither access logs nor a TLS-only policy
    app = App(outdir=str(tmp_path))
    enable_nag(app)
    s3.Bucket(Stack(app, "Careless"), "Bucket")
    # When it is synthesized, Then synthesis fails
    with pytest.raises(Exception, match="AwsSolutions"):
        app.synth()
    # And the report names each rule and the construct
    findings = unacknowledged_findings(tmp_path)
    assert any(f.startswith("AwsSolutions-S1 at Careless/Bucket/Resource") for f in findings), findings
    assert any(f.startswith("AwsSolutions-S10 at Careless/Bucket/Resource") for f in findings), findings


def test_an_acknowledgement_without_a_real_reason_is_refused() -> None:
    stack = Stack(App(), "S")
    with pytest.raises(ValueError, match="real reason"):
        acknowledge(stack, "AwsSolutions-S1", "ok")


def test_every_template_passes_cfn_lint_without_errors(synthesized: Synthesized) -> None:
    # Every stack's template and every nested one (the targets' group stacks, `*.nested.template.json`)
    paths = sorted(synthesized.outdir.glob("*.template.json"))
    assert {f"{s.artifact_id}.template.json" for s in synthesized.all_stacks} <= {p.name for p in paths}
    assert any(p.name.endswith(".nested.template.json") for p in paths)
    for path in paths:
        matches = lint(path.read_text(), config=ManualArgs(regions=["eu-west-1"]))
        errors = [
            f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id.startswith("E")
        ]
        assert errors == [], f"{path.name}: {errors}"
