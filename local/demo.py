"""`make demo`: Warden end to end on the local runtime.

Starts real Neo4j and PostgreSQL and the moto server, synthesizes the Warden stack for the local
stage and deploys it into moto, seeds a little data, then does what the schedules and an operator
would: health, backup, verify, a restore drill through the Recovery state machine (restore into
staging, validate against the manifest, record the RTO), a prune dry run and the audit trail.
Everything is stopped at the end, whatever happened. The functions' JSON logs go to a file in the
work dir (named at the start and the end), so that stdout holds only the demo's steps.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from local.config import load_local_config
from local.runtime import LocalRuntime
from warden.health import format_text
from warden.models import HealthReport
from warden_cli.main import execution_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="local target file (default: local/targets.sample.yaml)")
    parser.add_argument("--function-logs", action="store_true",
                        help="show the functions' JSON logs and EMF metrics on stdout (as CloudWatch would get "
                             "them) rather than the logs in a file")
    parser.add_argument("--work-dir", type=Path, help="where the databases keep their data (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)  # moto server request log (and its unimplemented APIs)
    if not args.function_logs:
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        warnings.filterwarnings("ignore", module="aws_lambda_powertools")  # metrics off: dimensions pile up
    config = load_local_config(args.config)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="warden-demo-"))
    log_file = work_dir / "function-logs.jsonl"
    print(f"Warden demo — stage {config.stage!r}, data under {work_dir}")
    if not args.function_logs:
        print(f"Function logs (JSON, as CloudWatch would get them): {log_file}")
    started = time.monotonic()
    with (nullcontext() if args.function_logs else function_logs_to(log_file),
          LocalRuntime(work_dir, config, server=True) as runtime):
        ok = Demo(runtime).run()
    print(f"\nEverything stopped. Demo took {time.monotonic() - started:.1f} s. "
          f"{'All steps passed.' if ok else 'SOME STEPS FAILED.'}")
    if not args.function_logs:
        print(f"Function logs: {log_file}")
    return 0 if ok else 1


@contextmanager
def function_logs_to(path: Path) -> Iterator[None]:
    """Send the functions' JSON logs to `path` (appended) instead of stdout, at POWERTOOLS_LOG_LEVEL
    (default INFO). They run in this process: every handler's `Logger()` and the library's loggers
    (`warden.*`) write through the one handler of Powertools' logger `warden`."""
    from aws_lambda_powertools import Logger

    handler = Logger(service="warden").registered_handler  # configures it, as a function's cold start would
    if not isinstance(handler, logging.StreamHandler):
        raise TypeError(f"the functions' log handler is a {type(handler).__name__}, not a stream handler")
    logger = logging.getLogger("warden")
    saved_stream, saved_level = handler.stream, logger.level
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream:
        handler.setStream(stream)
        logger.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO").upper())
        try:
            yield
        finally:
            handler.setStream(saved_stream)
            logger.setLevel(saved_level)


class Demo:
    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        assert runtime.deployment is not None
        self.deployment = runtime.deployment
        self.aws = runtime.aws
        self.ok = True
        self.rto: dict[str, float] = {}
        self.report_path: Path | None = None

    def run(self) -> bool:
        self.show_runtime()
        self.seed()
        backups = {t.name: self.backup(t.name) for t in self.runtime.targets}
        for target, record in backups.items():
            if record:
                self.verify(target, record["backup_id"])
        self.health()  # after the first verified backups: a target never backed up is unhealthy
        for target, record in backups.items():
            if record and self._drillable(target):
                self.drill(target)
        for target in backups:
            self.prune(target)
        pg = next((t.name for t in self.runtime.targets if t.engine.value == "postgres"), None)
        if pg and backups.get(pg):
            self.manual_recovery(pg)
        self.audit(next(iter(backups)))
        self.report()
        self.summary(backups)
        return self.ok

    def step(self, title: str) -> None:
        print(f"\n== {title}")

    def fail(self, message: str) -> None:
        self.ok = False
        print(f"   FAILED: {message}")

    def show_runtime(self) -> None:
        rt = self.runtime
        self.step("Local runtime (real servers; moto for AWS)")
        for name, server in sorted(rt.neo4j_servers.items()):
            ep = server.endpoint
            seconds = rt.timings.seconds.get(name, 0)
            print(f"   {name:<14} Neo4j {ep.version} {ep.edition:<10} {ep.uri}  ({seconds:.1f} s)")
        for name, pg in sorted(rt.postgres.items()):
            ep = pg.endpoint
            print(f"   {name:<14} PostgreSQL {ep.version:<6} postgresql://{ep.host}:{ep.port}  "
                  f"({rt.timings.seconds.get(name, 0):.1f} s)")
        for name, reason in rt.skipped.items():
            print(f"   {name:<14} skipped: {reason}")
        print(f"   {'AWS (moto)':<14} {rt.aws.endpoint_url}")
        print(f"   Synthesized Warden-{rt.config.stage} and deployed it into moto: {len(self.deployment.refs)} "
              f"resources ({rt.timings.seconds['deploy']:.1f} s). Targets: {', '.join(t.name for t in rt.targets)}")

    def seed(self) -> None:
        """A little data so the backups have something to carry."""
        import psycopg

        self.step("Seeding sample data")
        for name, pg in self.runtime.postgres.items():
            with psycopg.connect(pg.endpoint.uri(), autocommit=True) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, customer text, "
                             "total numeric(10,2), tags text[], details jsonb, placed timestamptz DEFAULT now())")
                conn.execute("INSERT INTO orders SELECT g, 'customer ' || (g % 97), g * 1.25, ARRAY['a', 'b'], "
                             "jsonb_build_object('n', g) FROM generate_series(1, 20000) g ON CONFLICT DO NOTHING")
                vector = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'").fetchone()
                if vector and vector[0]:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    conn.execute("CREATE TABLE IF NOT EXISTS embeddings (id int PRIMARY KEY, v vector(3))")
                    conn.execute("INSERT INTO embeddings SELECT g, ARRAY[g, g * 2, g * 3]::vector "
                                 "FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING")
                    conn.execute("CREATE INDEX IF NOT EXISTS embeddings_hnsw ON embeddings "
                                 "USING hnsw (v vector_l2_ops)")
            print(f"   {name}: orders (20,000 rows)" + (", embeddings (pgvector, HNSW index)" if vector and vector[0]
                                                          else ""))
        if self.runtime.neo4j is not None:
            import neo4j

            ep = self.runtime.neo4j.endpoint
            with neo4j.GraphDatabase.driver(ep.uri, auth=(ep.username, ep.password)) as driver:
                driver.execute_query(
                    "UNWIND range(1, 2000) AS i MERGE (p:Person {id: i}) SET p.name = 'person ' + i + ' 🐢', "
                    "p.born = date('1970-01-01') + duration({days: i}), "
                    "p.seen = datetime({epochSeconds: 1700000000 + i, timezone: 'Europe/Warsaw'}), "
                    "p.wake = localtime('07:30:00.123456789'), p.home = point({latitude: 52.2, longitude: 21.0}), "
                    "p.desk = point({x: i, y: 2.5, z: -1.0}), p.tenure = duration('P1Y2M3DT4H5M6.007S'), "
                    "p.scores = [1.5, 2.5, 0.0], p.flags = [true, false], p.big = 9223372036854775807")
                driver.execute_query("MATCH (a:Person), (b:Person) WHERE b.id = a.id + 1 "
                                     "MERGE (a)-[:KNOWS {since: date('2020-02-29')}]->(b)")
                driver.execute_query("CREATE CONSTRAINT person_id IF NOT EXISTS FOR (p:Person) REQUIRE p.id IS UNIQUE")
            print("   neo4j: 2,000 :Person nodes with temporal, spatial, list and big-integer properties, "
                  "1,999 :KNOWS relationships, a uniqueness constraint")

    def invoke(self, job: str, event: dict[str, Any]) -> Any:
        response = self.aws.client("lambda").invoke(FunctionName=self.deployment.function_named(job),
                                                    Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            raise RuntimeError(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        return payload

    def health(self) -> None:
        self.step("Health (the health function, through Lambda)")
        try:
            report = HealthReport.model_validate(self.invoke("health", {}))
        except RuntimeError as err:
            return self.fail(str(err))
        print("   " + format_text(report).replace("\n", "\n   "))
        if report.status.value == "unhealthy":
            self.fail("a target is unhealthy")
        return None

    def backup(self, target: str) -> dict[str, Any] | None:
        self.step(f"Backup of {target} (the backup function: stream → SHA-256 → S3 multipart → catalog)")
        try:
            record = self.invoke("backup", {"target": target, "trigger": "manual", "requested_by": "demo"})
        except RuntimeError as err:
            self.fail(str(err))
            return None
        print(f"   {record['backup_id']} {record['status']}: {record['size_bytes']:,} bytes in "
              f"{record['duration_s']:.2f} s, sha256 {record['sha256'][:16]}…, method {record['method']}")
        print(f"   counts: {_short(record['counts'])}")
        print(f"   consistency: {record['consistency']}")
        return dict(record)

    def verify(self, target: str, backup_id: str) -> None:
        self.step(f"Verify {target} {backup_id} (re-read the object, recompute SHA-256)")
        try:
            record = self.invoke("verify", {"target": target, "backup_id": backup_id})
        except RuntimeError as err:
            return self.fail(str(err))
        print(f"   {record['status']}")
        if record["status"] != "VERIFIED":
            self.fail(f"{target} backup is {record['status']}")
        return None

    def _drillable(self, target: str) -> bool:
        spec = next(t for t in self.runtime.targets if t.name == target)
        return spec.engine.value == "postgres" or bool(spec.recovery.staging_secret_name)

    def drill(self, target: str) -> None:
        from warden.stores.recovery_state import StateStore

        self.step(f"Restore drill of {target} (the Recovery state machine, promotion none)")
        sfn = self.aws.client("stepfunctions")
        arn = self.deployment.outputs()["RecoveryStateMachine"]
        execution = sfn.start_execution(stateMachineArn=arn, name=execution_name(target), input=json.dumps(
            {"target": target, "backup_id": "latest", "promotion": "none", "requested_by": "demo"}))["executionArn"]
        deadline = time.monotonic() + 300
        while (status := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                return self.fail("drill still running after 300 s")
            time.sleep(0.5)
        outputs = self.deployment.outputs()
        state = StateStore(outputs["StateTable"]).get(target) if status["status"] == "SUCCEEDED" else None
        states = [e["stateEnteredEventDetails"]["name"] for e in sfn.get_execution_history(
            executionArn=execution)["events"] if "stateEnteredEventDetails" in e]
        print(f"   {' → '.join(states)}")
        if state is None:
            return self.fail(f"{status.get('error')}: {status.get('cause')}")
        print(f"   {state.status.value}: restored into staging and validated against the manifest; "
              f"RTO {state.rto_s:.1f} s (recorded on the backup)")
        self.rto[target] = state.rto_s or 0.0
        return None

    def prune(self, target: str) -> None:
        self.step(f"Prune {target} (dry run: decisions and reasons, nothing deleted)")
        try:
            report = self.invoke("prune", {"target": target, "trigger": "cli"})
        except RuntimeError as err:
            return self.fail(str(err))
        for decision in report["decisions"]:
            print(f"   {'KEEP  ' if decision['keep'] else 'DELETE'} {decision['backup_id']} "
                  f"{'; '.join(decision['reasons'])}")
        return None

    def manual_recovery(self, target: str) -> None:
        """A swap recovery that waits for an operator: approved here the way `warden recovery approve` does."""
        from warden.recovery import answer_approval
        from warden.settings import Settings
        from warden.stores import Stores
        from warden.stores.recovery_state import StateStore

        self.step(f"Recovery of {target} with manual approval (swap), answered like `warden recovery approve`")
        outputs = self.deployment.outputs()
        settings = Settings.from_env({"WARDEN_STAGE": self.runtime.config.stage,
                                      "WARDEN_STATE_TABLE": outputs["StateTable"],
                                      "WARDEN_AUDIT_TABLE": outputs["AuditTable"]})
        sfn = self.aws.client("stepfunctions")
        execution = sfn.start_execution(
            stateMachineArn=outputs["RecoveryStateMachine"], name=execution_name(target),
            input=json.dumps({"target": target, "promotion": "swap", "approval": "manual", "requested_by": "demo"}),
        )["executionArn"]
        store, deadline = StateStore(outputs["StateTable"]), time.monotonic() + 300
        while store.get(target).status.value != "AWAITING_APPROVAL":
            if sfn.describe_execution(executionArn=execution)["status"] != "RUNNING" or time.monotonic() > deadline:
                return self.fail(f"recovery did not reach approval: {sfn.describe_execution(executionArn=execution)}")
            time.sleep(0.5)
        print("   validated copy waiting for approval (an SNS message asks the operators) — approving")
        answer_approval(Stores.from_settings(settings), target, approve=True, actor="cli:demo")
        while (status := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            time.sleep(0.5)
        state = store.get(target)
        if status["status"] != "SUCCEEDED":
            return self.fail(f"{status.get('error')}: {status.get('cause')}")
        print(f"   {state.status.value}: production is now the restored copy; the previous database is kept as "
              f"{state.previous_database}; RTO {state.rto_s:.1f} s")
        self.rto[f"{target} swap"] = state.rto_s or 0.0
        return None

    def report(self) -> None:
        """The weekly report, rendered for this week as next Monday's scheduled run will render it."""
        from datetime import UTC, datetime, timedelta

        from warden.report import render_report, run_report
        from warden.settings import Settings
        from warden.stores import Stores

        self.step("Weekly report (this week, as next Monday's run will render it)")
        outputs = self.deployment.outputs()
        settings = Settings.from_env({"WARDEN_STAGE": self.runtime.config.stage,
                                      "WARDEN_CATALOG_TABLE": outputs["CatalogTable"],
                                      "WARDEN_AUDIT_TABLE": outputs["AuditTable"],
                                      "WARDEN_STATE_TABLE": outputs["StateTable"], "WARDEN_BUCKET": outputs["Bucket"],
                                      "WARDEN_TOPIC_ARN": outputs["Topic"], "WARDEN_KMS_KEY_ID": outputs["Key"]})
        today = datetime.now(UTC)
        next_monday = (today + timedelta(days=7 - today.weekday())).replace(hour=7, minute=0, second=0, microsecond=0)
        try:
            stored = run_report(Stores.from_settings(settings), next_monday, "demo", charts="local")
            html, _ = render_report(Stores.from_settings(settings), next_monday, charts="local", actor="demo")
        except Exception as err:
            return self.fail(f"report: {type(err).__name__}: {err}")
        path = self.runtime.work_dir / "weekly-report.html"
        path.write_text(html)
        self.report_path = path
        print(f"   stored at s3://{outputs['Bucket']}/{stored['key']} (summary sent to SNS)")
        print(f"   open it: file://{path}")
        print("   " + stored["summary"].replace("\n", "\n   "))
        return None

    def summary(self, backups: dict[str, dict[str, Any] | None]) -> None:
        self.step("Summary")
        print(f"   {'target':<14} {'backup id':<26} {'size':>10}  {'sha256':<16}  {'RTO drill':>9}")
        for target, record in backups.items():
            if record:
                rto = self.rto.get(target)
                print(f"   {target:<14} {record['backup_id']:<26} {record['size_bytes']:>10,}  "
                      f"{record['sha256'][:16]}  {f'{rto:.1f} s' if rto is not None else '-':>9}")
        for name, rto in self.rto.items():
            if name.endswith(" swap"):
                print(f"   recovery with approval and swap of {name[:-5]}: RTO {rto:.1f} s")
        if self.report_path:
            print(f"   weekly report: file://{self.report_path}")

    def audit(self, target: str) -> None:
        from warden.stores.audit import tail

        self.step(f"Audit trail of {target} (append-only)")
        for entry in reversed(tail(self.deployment.outputs()["AuditTable"], target, 12)):
            print(f"   {entry.at:%H:%M:%S} {entry.operation:<8} {entry.step:<10} {entry.outcome:<6} {entry.actor}")


def _short(counts: dict[str, int], limit: int = 6) -> str:
    items = list(counts.items())
    text = ", ".join(f"{k}={v:,}" for k, v in items[:limit])
    return text + (f", … ({len(items)} in all)" if len(items) > limit else "")


if __name__ == "__main__":
    sys.exit(main())
