#!/usr/bin/env python3
"""CDK entry point: one WardenStack per stage of cdk.json, cdk-nag AwsSolutions checks always on.

    python app.py                  synthesize every stage into cdk.out/
    python app.py -c stage=dev     one stage (as `cdk synth -c stage=dev` does)
    python app.py --fetch-rds-ca   also fetch the RDS CA bundle into the layer when it is missing

No Docker, no AWS calls; the network only to build the dependency layer the first time. Exits
non-zero when the configuration is invalid or any cdk-nag finding is unacknowledged.
"""

from __future__ import annotations

import json
import os
import shutil
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


def prune_stale_outputs(outdir: Path) -> None:
    """Remove what earlier synths left in `outdir` that this one does not use (stacks of stages
    not synthesized this time, assets of old layer builds), so `cdk.out/*.template.json` is this
    synth's templates only."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    keep: set[str] = set()
    for artifact in manifest.get("artifacts", {}).values():
        properties = artifact.get("properties", {})
        keep.update(
            name
            for name in (properties.get("templateFile"), properties.get("file"), artifact.get("additionalMetadataFile"))
            if name
        )
    for assets_file in [outdir / name for name in keep if name.endswith(".assets.json")]:
        for asset in json.loads(assets_file.read_text()).get("files", {}).values():
            keep.add(asset["source"]["path"])
    for path in outdir.iterdir():
        stack_file = path.name.endswith((".template.json", ".assets.json", ".metadata.json"))
        if (stack_file or path.name.startswith("asset.")) and path.name not in keep:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def ensure_rds_ca_bundle() -> None:
    """Under the CDK CLI (`cdk synth` / `cdk deploy`: cdk.json passes --fetch-rds-ca), fetch the RDS
    CA bundle into the layer when it is missing: PostgreSQL targets verify the server against it by
    default (warden.tls). Offline, only a warning; `python app.py` without the flag (tests,
    `make synth`) never touches the network."""
    from infra.certs import BundleError, fetch_bundle
    from warden.tls import RDS_CA_BUNDLE

    if RDS_CA_BUNDLE.exists():
        return
    try:
        fetch_bundle()
        print(f"fetched the RDS CA bundle into {RDS_CA_BUNDLE}; commit it with SOURCE.md", file=sys.stderr)
    except (OSError, BundleError) as err:
        print(f"warning: the RDS CA bundle is missing and could not be fetched ({err}); PostgreSQL targets "
              "that verify TLS will not connect until `python -m infra.certs` succeeds", file=sys.stderr)


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    if "--fetch-rds-ca" in argv:  # cdk.json's app command: `cdk synth` / `cdk deploy`
        argv = [a for a in argv if a != "--fetch-rds-ca"]
        ensure_rds_ca_bundle()
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
    if outdir is not None:  # our own cdk.out; the CDK CLI manages the directories it chooses
        prune_stale_outputs(Path(outdir))
    elapsed = time.perf_counter() - started
    print(
        f"synthesized {', '.join(s.stack_name for s in stacks.values())} into {assembly.directory} "
        f"in {elapsed:.1f} s; cdk-nag: no unacknowledged findings",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
