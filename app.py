#!/usr/bin/env python3
"""CDK entry point: one WardenStack per stage of cdk.json, cdk-nag AwsSolutions checks always on.

    python app.py                  synthesize every stage into cdk.out/
    python app.py -c stage=dev     one stage (as `cdk synth -c stage=dev` does)

No Docker, no AWS calls; the network only to build the dependency layer the first time. Exits
non-zero when the configuration is invalid or any cdk-nag finding is unacknowledged.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from infra.config import ConfigError
from infra.nag import unacknowledged_findings
from infra.stack import build_app


def parse_context_args(argv: list[str]) -> dict[str, str]:
    """`-c key=value` / `--context key=value` pairs, as the CDK CLI spells them."""
    context: dict[str, str] = {}
    args = iter(argv)
    for arg in args:
        if arg in ("-c", "--context"):
            pair = next(args, "")
        elif arg.startswith("--context="):
            pair = arg.removeprefix("--context=")
        else:
            raise SystemExit(f"unexpected argument {arg!r}; usage: app.py [-c key=value ...]")
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"context must be key=value, got {pair!r}")
        context[key] = value
    return context


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    try:
        # The CDK CLI says where to write (CDK_OUTDIR); run directly, write where `cdk` would.
        outdir = None if os.environ.get("CDK_OUTDIR") else str(Path(__file__).resolve().parent / "cdk.out")
        app, stacks = build_app(parse_context_args(argv), outdir=outdir)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        assembly = app.synth()
    except Exception as exc:  # jsii surfaces the CDK's validation failure as a generic error
        print(f"synthesis failed: {exc}", file=sys.stderr)
        return 1
    findings = unacknowledged_findings(assembly.directory)
    if findings:
        print("unacknowledged cdk-nag findings:", *findings, sep="\n  ", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    print(
        f"synthesized {', '.join(s.stack_name for s in stacks.values())} into {assembly.directory} "
        f"in {elapsed:.1f} s; cdk-nag: no unacknowledged findings",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
