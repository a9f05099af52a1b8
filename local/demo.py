"""`make demo`: Warden end to end on the local runtime.

Today: start real Neo4j and PostgreSQL and the moto server, register the sample targets as a stage
would have them, run the health function through Lambda (moto → the real handler → the real
databases), print what happened, and stop everything. It grows as capabilities land.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from local.config import load_local_config
from local.runtime import LocalRuntime
from warden.health import format_text
from warden.models import HealthReport


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__)
    parser.add_argument("--config", type=Path, help="local target file (default: local/targets.sample.yaml)")
    parser.add_argument("--function-logs", action="store_true",
                        help="show the functions' JSON logs and EMF metrics (as CloudWatch would get them)")
    parser.add_argument("--work-dir", type=Path, help="where the databases keep their data (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto server's request log

    if not args.function_logs:
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    config = load_local_config(args.config)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="warden-demo-"))
    print(f"Warden demo — stage {config.stage!r}, data under {work_dir}")
    started = time.monotonic()
    with LocalRuntime(work_dir, config, server=True) as runtime:
        print("\nLocal runtime (real servers, moto for AWS):")
        if runtime.neo4j is not None:
            ep = runtime.neo4j.endpoint
            print(f"  Neo4j       {ep.version} {ep.edition:<10} {ep.uri}  "
                  f"(started in {runtime.timings.seconds.get('neo4j', 0):.1f} s)")
        for service, pg in sorted(runtime.postgres.items()):
            ep = pg.endpoint
            print(f"  PostgreSQL  {ep.version:<17} postgresql://{ep.host}:{ep.port}  [{service}]  "
                  f"(started in {runtime.timings.seconds.get(service, 0):.1f} s)")
        for service, reason in runtime.skipped.items():
            print(f"  skipped     {service}: {reason}")
        print(f"  AWS (moto)  {runtime.aws.endpoint_url}")
        print(f"\nTargets registered (config in SSM, credentials in Secrets Manager): "
              f"{', '.join(t.name for t in runtime.targets)}")

        assert runtime.deployment is not None
        print(f"\nDeployed the synthesized Warden-{config.stage} template into moto "
              f"({len(runtime.deployment.refs)} resources, {runtime.timings.seconds['deploy']:.1f} s incl. synth)")
        function = runtime.deployment.function_named("health")
        print(f"\nInvoking {function} through Lambda for every target...")
        response = runtime.aws.client("lambda").invoke(FunctionName=function, Payload=b"{}")
        payload = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            print(f"health function failed: {payload.get('errorType')}: {payload.get('errorMessage')}")
            return 1
        report = HealthReport.model_validate(payload)
        print(format_text(report))
    print(f"\nEverything stopped. Demo took {time.monotonic() - started:.1f} s.")
    return 0 if report.status.value == "healthy" else 1


if __name__ == "__main__":
    sys.exit(main())
