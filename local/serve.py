"""The local runtime as a background service, for `warden local up|down|status`.

`python -m local.serve --state FILE` starts the runtime (real databases, the moto server, the
synthesized stack deployed into it), writes FILE with everything the CLI needs (moto endpoint,
stack outputs, database endpoints without passwords), and runs until SIGTERM / SIGINT, then stops
everything and removes FILE.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from local.config import load_local_config
from local.runtime import LocalRuntime

DEFAULT_HOME = Path(os.environ.get("WARDEN_LOCAL_HOME", Path.home() / ".warden" / "local"))


def state_file(home: Path = DEFAULT_HOME) -> Path:
    return home / "state.json"


def describe(runtime: LocalRuntime) -> dict[str, Any]:
    assert runtime.deployment is not None
    services: dict[str, Any] = {}
    for name, server in runtime.neo4j_servers.items():
        ep = server.endpoint
        services[name] = {"uri": ep.uri, "version": ep.version, "edition": ep.edition}
    for name, pg in runtime.postgres.items():
        ep = pg.endpoint
        services[name] = {"uri": f"postgresql://{ep.host}:{ep.port}/{ep.dbname}", "version": ep.version}
    return {
        "stage": runtime.config.stage,
        "pid": os.getpid(),
        "started_at": time.time(),
        "endpoint_url": runtime.aws.endpoint_url,
        "outputs": runtime.deployment.outputs(),
        "function_environment": runtime.deployment.extra_environment,
        "services": services,
        "skipped": runtime.skipped,
        "targets": [t.name for t in runtime.targets],
        "timings": runtime.timings.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.serve")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="data and state directory")
    parser.add_argument("--config", type=Path, help="local target file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    state = state_file(args.home)
    args.home.mkdir(parents=True, exist_ok=True)
    with LocalRuntime(args.home / "data", load_local_config(args.config), server=True) as runtime:
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps(describe(runtime), indent=2))
        tmp.replace(state)
        print(f"local runtime ready: {state}", flush=True)
        try:
            while not stop.wait(1):
                pass
        finally:
            state.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
