"""Instance alarms: the machine-level picture beside the database checks, per target that names its
instances — EC2 instances of a self-hosted target (`Target.instances.ec2_instance_ids`) and the RDS
instance or Aurora cluster of a PostgreSQL target (`Target.rds`). Thresholds: `Target.instances`
(warden.monitoring_config), defaults otherwise. What each alarm means and what to do:
docs/monitoring.md.

Names follow infra/alarms.py (`warden-<stage>-<target>-<what>`), every alarm notifies the stage's
topic on ALARM and on OK, and each is added to the stage's `Alarms` (`alarms`, `by_target`) so the
dashboard shows its state. Remediation sees every alarm of the stage; only
`<t>-rds-connections-high` has a Warden action (end idle-in-transaction sessions, like
`pg-connections-saturated`, see warden.remediation.ACTIONS). `recover_on_system_check_failure`
adds EC2's own recover action to a separate `system-check-failed` alarm.

| alarm `warden-<stage>-<t>-...`      | metric (statistic)                          | fires                        |
|-------------------------------------|---------------------------------------------|------------------------------|
| `ec2-<id>-cpu-high`                 | AWS/EC2 CPUUtilization (Average)            | > cpu_percent                |
| `ec2-<id>-memory-high`              | CWAgent mem_used_percent (Maximum)          | > memory_percent             |
| `ec2-<id>-disk-<path>-high`         | CWAgent disk_used_percent (Maximum)         | > disk_percent               |
| `ec2-<id>-network-in-high` / `-out` | AWS/EC2 NetworkIn / NetworkOut (Sum)        | > Mbit/s x period (if given) |
| `ec2-<id>-status-check-failed`      | AWS/EC2 StatusCheckFailed (Maximum, 1 min)  | >= 1, 2 of 2                 |
| `ec2-<id>-system-check-failed`      | StatusCheckFailed_System (Max, 1 min)       | >= 1, 2 of 2 → EC2 recover   |
| `rds-cpu-high`                      | AWS/RDS CPUUtilization (Average)            | > cpu_percent                |
| `rds-freeable-memory-low`           | FreeableMemory (Minimum)                    | < bytes                      |
| `rds-free-storage-low`              | FreeStorageSpace / Aurora FreeLocalStorage  | < bytes                      |
| `rds-connections-high`              | DatabaseConnections (Maximum)               | > % of max_connections       |
| `rds-read-latency-high` / `write`   | ReadLatency / WriteLatency (Average)        | > ms / 1000 s                |
| `rds-replica-lag-high`              | ReplicaLag s / Aurora AuroraReplicaLag ms   | > replica_lag_s              |

The windows are `instances.evaluation` (default 3 of 3 five-minute periods) except the status checks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from constructs import Construct

from infra.alarms import Alarms
from warden import names
from warden.config.monitoring import InstanceMonitoring
from warden.config.target import Target

EC2 = "AWS/EC2"
RDS = "AWS/RDS"
CWAGENT = "CWAgent"  # the CloudWatch agent's default namespace (docs/cloudwatch-agent.json)
STATUS_PERIOD = Duration.minutes(1)  # EC2 status checks are reported every minute, free
_GT = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
_LT = cw.ComparisonOperator.LESS_THAN_THRESHOLD
_GE = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
# Missing = notBreaching for AWS's own metrics: a stopped instance reports nothing, and a database
# that is down is the `unhealthy` alarm's business.
_QUIET = cw.TreatMissingData.NOT_BREACHING


def instance_monitoring_of(target: Target) -> InstanceMonitoring | None:
    """The instance thresholds of a target that names instances (EC2 ids or rds), else None."""
    if target.instances is not None:
        return target.instances
    return InstanceMonitoring() if target.rds is not None else None


def path_slug(path: str) -> str:
    """A mount point as an alarm-name part: `/` → `root`, `/var/lib/neo4j` → `var-lib-neo4j`."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-").lower()
    return slug or "root"


def add_target_alarm(
    scope: Construct,
    alarms: Alarms,
    target: str,
    what: str,
    *,
    metric: cw.IMetric,
    threshold: float,
    comparison: cw.ComparisonOperator,
    missing: cw.TreatMissingData,
    description: str,
    datapoints: int = 1,
    periods: int = 1,
    extra_actions: Sequence[cw.IAlarmAction] = (),
) -> cw.Alarm:
    """One alarm `warden-<stage>-<target>-<what>` on the stage's topic (ALARM and OK), registered
    with the stage's `Alarms` so the dashboard and the tests see it beside the others."""
    name = f"{names.alarm_prefix(alarms.stage.name)}{target}-{what}"
    if name in alarms.alarms:
        raise ValueError(f"alarm {name} exists twice")
    alarm = cw.Alarm(
        scope,
        name,
        alarm_name=name,
        alarm_description=description,
        metric=metric,
        threshold=threshold,
        comparison_operator=comparison,
        evaluation_periods=periods,
        datapoints_to_alarm=datapoints,
        treat_missing_data=missing,
    )
    topic = cw_actions.SnsAction(alarms.topic)
    alarm.add_alarm_action(*extra_actions, topic)
    alarm.add_ok_action(topic)
    alarms.alarms[name] = alarm
    alarms.by_target.setdefault(target, []).append(alarm)
    return alarm


def ec2_metric(name: str, instance_id: str, *, statistic: str, period: Duration, namespace: str = EC2,
               label: str | None = None, **dimensions: str) -> cw.Metric:
    return cw.Metric(namespace=namespace, metric_name=name, statistic=statistic, period=period, label=label,
                     dimensions_map={"InstanceId": instance_id, **dimensions})


def rds_dimensions(target: Target) -> dict[str, str]:
    """RDS metrics of an instance by DBInstanceIdentifier; of an Aurora cluster by DBClusterIdentifier
    (CloudWatch aggregates the cluster's instances under it)."""
    assert target.rds is not None
    if target.rds.cluster_id is not None:
        return {"DBClusterIdentifier": target.rds.cluster_id}
    assert target.rds.instance_id is not None
    return {"DBInstanceIdentifier": target.rds.instance_id}


def rds_metric(name: str, target: Target, *, statistic: str, period: Duration,
               label: str | None = None) -> cw.Metric:
    return cw.Metric(namespace=RDS, metric_name=name, statistic=statistic, period=period, label=label,
                     dimensions_map=rds_dimensions(target))


def _is_aurora(target: Target) -> bool:
    return target.rds is not None and target.rds.cluster_id is not None


def free_memory_threshold_bytes(config: InstanceMonitoring) -> float:
    """FreeableMemory below this fires: (100 - memory_percent) % of memory_gb, else min_freeable_memory_mb."""
    if config.memory_gb is not None:
        return config.memory_gb * 2**30 * (100 - config.memory_percent) / 100
    return config.min_freeable_memory_mb * 2**20


def free_storage_threshold_bytes(config: InstanceMonitoring) -> float:
    """Free storage below this fires: (100 - disk_percent) % of storage_gb, else min_free_storage_gb."""
    if config.storage_gb is not None:
        return config.storage_gb * 2**30 * (100 - config.disk_percent) / 100
    return config.min_free_storage_gb * 2**30


class InstanceAlarms(Construct):
    """The instance alarms of every target of the stage that names instances.

    Compose it after `Alarms` (it adds to `alarms.alarms` / `alarms.by_target`) and before the
    dashboard. Attributes: `alarms` {name: Alarm}, `by_target` {target: [Alarm]}.
    """

    def __init__(self, scope: Construct, id: str, *, alarms: Alarms,
                 targets: Sequence[Target] | None = None) -> None:
        super().__init__(scope, id)
        self._stage_alarms = alarms
        self.alarms: dict[str, cw.Alarm] = {}
        self.by_target: dict[str, list[cw.Alarm]] = {}
        for target in alarms.stage.targets if targets is None else targets:  # one target per group stack
            config = instance_monitoring_of(target)
            if config is None:
                continue
            for instance_id in config.ec2_instance_ids:
                self._build_ec2_alarms(target, instance_id, config)
            if target.rds is not None:
                self._build_rds_alarms(target, config)

    def _alarm(self, target: str, what: str, **kwargs: object) -> cw.Alarm:
        alarm = add_target_alarm(self, self._stage_alarms, target, what, **kwargs)  # type: ignore[arg-type]
        self.alarms[alarm.node.id] = alarm
        self.by_target.setdefault(target, []).append(alarm)
        return alarm

    # -- EC2

    def _build_ec2_alarms(self, target: Target, instance_id: str, config: InstanceMonitoring) -> None:
        t, ev = target.name, config.evaluation
        period = Duration.minutes(ev.period_minutes)
        window = dict(datapoints=ev.datapoints, periods=ev.periods)
        sustained = f"in {ev.datapoints} of the last {ev.periods} {ev.period_minutes}-minute periods"
        subject = f"ec2-{instance_id}"
        host = f"{t}'s EC2 instance {instance_id}"
        self._alarm(
            t, f"{subject}-cpu-high",
            metric=ec2_metric("CPUUtilization", instance_id, statistic="Average", period=period),
            threshold=config.cpu_percent, comparison=_GT, missing=_QUIET, **window,
            description=(
                f"{host} used over {config.cpu_percent:g}% CPU {sustained}. Compare with the database's "
                f"activity (`warden health --target {t}`: long transactions, active queries); on a burstable "
                f"type check CPUCreditBalance. Lasting fix: tune the heavy queries or a larger instance type."
            ),
        )
        # Missing = missing (INSUFFICIENT_DATA): agent metrics stop when the CloudWatch agent does; the
        # dashboard shows that instead of a quiet OK.
        self._alarm(
            t, f"{subject}-memory-high",
            metric=ec2_metric("mem_used_percent", instance_id, statistic="Maximum", period=period,
                              namespace=CWAGENT),
            threshold=config.memory_percent, comparison=_GT, missing=cw.TreatMissingData.MISSING, **window,
            description=(
                f"{host} used over {config.memory_percent:g}% of its memory {sustained} (CloudWatch agent "
                f"mem_used_percent). For Neo4j, heap plus page cache must leave room for the OS: compare "
                f"server.memory.heap.max_size and server.memory.pagecache.size with the instance's memory."
            ),
        )
        for path in config.disk_paths:
            self._alarm(
                t, f"{subject}-disk-{path_slug(path)}-high",
                metric=ec2_metric("disk_used_percent", instance_id, statistic="Maximum", period=period,
                                  namespace=CWAGENT, path=path),
                threshold=config.disk_percent, comparison=_GT, missing=cw.TreatMissingData.MISSING, **window,
                description=(
                    f"The disk mounted at {path} on {host} is over {config.disk_percent:g}% full {sustained} "
                    f"(CloudWatch agent disk_used_percent). A full disk stops the database: free space "
                    f"(old transaction logs, dumps, logs) or grow the EBS volume and the file system now."
                ),
            )
        for direction, limit in (("in", config.network_in_mbps), ("out", config.network_out_mbps)):
            if limit is None:
                continue
            bytes_per_period = limit * 1e6 / 8 * period.to_seconds()
            self._alarm(
                t, f"{subject}-network-{direction}-high",
                metric=ec2_metric(f"Network{direction.title()}", instance_id, statistic="Sum", period=period),
                threshold=bytes_per_period, comparison=_GT, missing=_QUIET, **window,
                description=(
                    f"{host} moved more than {limit:g} Mbit/s {direction} on average {sustained}. Find who: "
                    f"large exports or backups, a replica catching up, or unexpected clients (VPC flow "
                    f"logs). Sustained traffic near the instance type's bandwidth slows every query."
                ),
            )
        self._alarm(
            t, f"{subject}-status-check-failed",
            metric=ec2_metric("StatusCheckFailed", instance_id, statistic="Maximum", period=STATUS_PERIOD),
            threshold=1, comparison=_GE, missing=_QUIET, datapoints=2, periods=2,
            description=(
                f"{host} failed an EC2 status check for 2 minutes (system: AWS hardware or network; instance: "
                f"the OS, e.g. out of memory or a full root disk). See the instance's Status checks tab and "
                f"its system log; a failed system check needs a stop and start (or the recover action)."
            ),
        )
        if config.recover_on_system_check_failure:
            self._alarm(
                t, f"{subject}-system-check-failed",
                metric=ec2_metric("StatusCheckFailed_System", instance_id, statistic="Maximum",
                                  period=STATUS_PERIOD),
                threshold=1, comparison=_GE, missing=_QUIET, datapoints=2, periods=2,
                extra_actions=[cw_actions.Ec2Action(cw_actions.Ec2InstanceAction.RECOVER)],
                description=(
                    f"{host} failed its EC2 system status check for 2 minutes: EC2 recovers it onto healthy "
                    f"hardware (same id, IP and EBS volumes; memory is lost, so Neo4j restarts and recovers "
                    f"from its transaction log). Check the database with `warden health --target {t}`."
                ),
            )

    # -- RDS / Aurora

    def _build_rds_alarms(self, target: Target, config: InstanceMonitoring) -> None:
        t, ev = target.name, config.evaluation
        period = Duration.minutes(ev.period_minutes)
        window = dict(datapoints=ev.datapoints, periods=ev.periods)
        sustained = f"in {ev.datapoints} of the last {ev.periods} {ev.period_minutes}-minute periods"
        assert target.rds is not None
        aurora = _is_aurora(target)
        what = f"Aurora cluster {target.rds.cluster_id}" if aurora else f"RDS instance {target.rds.instance_id}"
        host = f"{t}'s {what}"
        self._alarm(
            t, "rds-cpu-high",
            metric=rds_metric("CPUUtilization", target, statistic="Average", period=period),
            threshold=config.cpu_percent, comparison=_GT, missing=_QUIET, **window,
            description=(
                f"{host} used over {config.cpu_percent:g}% CPU {sustained}. Performance Insights (top SQL by "
                f"load) and pg_stat_statements show which queries; `warden health --target {t}` lists long "
                f"and blocked queries. Lasting fix: tune them, add a reader, or a larger instance class."
            ),
        )
        memory = free_memory_threshold_bytes(config)
        self._alarm(
            t, "rds-freeable-memory-low",
            metric=rds_metric("FreeableMemory", target, statistic="Minimum", period=period),
            threshold=memory, comparison=_LT, missing=_QUIET, **window,
            description=(
                f"{host} had under {memory / 2**20:,.0f} MiB of freeable memory {sustained}. Too many "
                f"connections (each takes work_mem and more) or a large shared_buffers leave the OS no room "
                f"and swapping follows: check DatabaseConnections, work_mem and SwapUsage."
            ),
        )
        storage_metric = "FreeLocalStorage" if aurora else "FreeStorageSpace"
        storage = free_storage_threshold_bytes(config)
        self._alarm(
            t, "rds-free-storage-low",
            metric=rds_metric(storage_metric, target, statistic="Minimum", period=period),
            threshold=storage, comparison=_LT, missing=_QUIET, **window,
            description=(
                f"{host} had under {storage / 2**30:,.1f} GiB of {storage_metric} {sustained}. "
                + ("Aurora's local storage holds temporary tables and sort files: find the queries that "
                   "spill (temp_files in pg_stat_database) or use a larger instance class."
                   if aurora else
                   "A full RDS volume stops writes: enable storage autoscaling or modify the allocated "
                   "storage now; look for bloat, old replication slots holding WAL, and large temp files.")
                + " Warden has no automatic action for this; it only notifies."
            ),
        )
        if config.max_connections is not None:
            limit = config.max_connections * config.connections_percent / 100
            self._alarm(
                t, "rds-connections-high",
                metric=rds_metric("DatabaseConnections", target, statistic="Maximum", period=period),
                threshold=limit, comparison=_GT, missing=_QUIET, **window,
                description=(
                    f"{host} had over {limit:g} connections ({config.connections_percent:g}% of max_connections "
                    f"{config.max_connections}) {sustained}; new connections will soon be refused. When "
                    f"remediation's end_idle_in_transaction is on for {t}, Warden ends sessions idle in a "
                    f"transaction; lasting fix: a pooler (RDS Proxy, PgBouncer) or smaller pools."
                ),
            )
        for kind, limit_ms in (("read", config.read_latency_ms), ("write", config.write_latency_ms)):
            self._alarm(
                t, f"rds-{kind}-latency-high",
                metric=rds_metric(f"{kind.title()}Latency", target, statistic="Average", period=period),
                threshold=limit_ms / 1000, comparison=_GT, missing=_QUIET, **window,
                description=(
                    f"{host}'s average disk {kind} latency was over {limit_ms:g} ms {sustained}. Compare "
                    f"{kind.title()}IOPS and throughput with the volume's provisioned limits (gp3 / io2) and "
                    f"check DiskQueueDepth; a burst balance at zero on gp2 looks the same."
                ),
            )
        lag_metric, lag_threshold, unit = (
            ("AuroraReplicaLag", config.replica_lag_s * 1000, "ms") if aurora
            else ("ReplicaLag", config.replica_lag_s, "s")
        )
        self._alarm(
            t, "rds-replica-lag-high",
            metric=rds_metric(lag_metric, target, statistic="Maximum", period=period),
            threshold=lag_threshold, comparison=_GT, missing=_QUIET, **window,
            description=(
                f"A replica of {host} lagged more than {config.replica_lag_s:g} s ({lag_metric}, in {unit}) "
                f"{sustained}: reads there are stale and a failover would lose more. Look for long "
                f"transactions on the replica, heavy writes on the writer, or an undersized replica. "
                f"No replica reports nothing, and the alarm stays OK."
            ),
        )


def instance_widgets(target: Target, width: int, height: int) -> list[cw.IWidget]:
    """Dashboard graphs of a target's instances (empty when it names none)."""
    config = instance_monitoring_of(target)
    if config is None:
        return []
    t = target.name
    period = Duration.minutes(config.evaluation.period_minutes)
    widgets: list[cw.IWidget] = []

    def graph(title: str, left: Sequence[cw.IMetric], annotations: list[cw.HorizontalAnnotation] | None = None,
              right: Sequence[cw.IMetric] | None = None, left_max: float | None = None) -> cw.GraphWidget:
        return cw.GraphWidget(title=title, left=list(left), right=list(right) if right else None,
                              left_annotations=annotations, width=width,
                              height=height, left_y_axis=cw.YAxisProps(min=0, max=left_max, show_units=False),
                              right_y_axis=cw.YAxisProps(min=0, show_units=False) if right else None)

    ids = config.ec2_instance_ids
    if ids:
        widgets.append(graph(
            f"{t}: EC2 CPU / memory used (%)",
            [ec2_metric("CPUUtilization", i, statistic="Average", period=period, label=f"{i} cpu") for i in ids]
            + [ec2_metric("mem_used_percent", i, statistic="Maximum", period=period, namespace=CWAGENT,
                          label=f"{i} memory") for i in ids],
            [cw.HorizontalAnnotation(value=config.cpu_percent, label="cpu alarm"),
             cw.HorizontalAnnotation(value=config.memory_percent, label="memory alarm")],
            left_max=100,
        ))
        widgets.append(graph(
            f"{t}: EC2 disk used (%)",
            [ec2_metric("disk_used_percent", i, statistic="Maximum", period=period, namespace=CWAGENT,
                        label=f"{i} {p}", path=p) for i in ids for p in config.disk_paths],
            [cw.HorizontalAnnotation(value=config.disk_percent, label="alarm")],
            left_max=100,
        ))
        widgets.append(graph(
            f"{t}: EC2 network (bytes per period)",
            [ec2_metric(f"Network{d}", i, statistic="Sum", period=period, label=f"{i} {d.lower()}")
             for i in ids for d in ("In", "Out")],
            right=[ec2_metric("StatusCheckFailed", i, statistic="Maximum", period=STATUS_PERIOD,
                              label=f"{i} status check failed") for i in ids],
        ))
    if target.rds is not None:
        aurora = _is_aurora(target)
        widgets.append(graph(
            f"{t}: RDS CPU (%) and connections",
            [rds_metric("CPUUtilization", target, statistic="Average", period=period, label="cpu")],
            [cw.HorizontalAnnotation(value=config.cpu_percent, label="cpu alarm")],
            right=[rds_metric("DatabaseConnections", target, statistic="Maximum", period=period,
                              label="connections")],
            left_max=100,
        ))
        widgets.append(graph(
            f"{t}: RDS free memory / storage (bytes)",
            [rds_metric("FreeableMemory", target, statistic="Minimum", period=period, label="freeable memory"),
             rds_metric("FreeLocalStorage" if aurora else "FreeStorageSpace", target, statistic="Minimum",
                        period=period, label="free storage")],
        ))
        widgets.append(graph(
            f"{t}: RDS latency (s) and replica lag",
            [rds_metric("ReadLatency", target, statistic="Average", period=period, label="read"),
             rds_metric("WriteLatency", target, statistic="Average", period=period, label="write")],
            right=[rds_metric("AuroraReplicaLag" if aurora else "ReplicaLag", target, statistic="Maximum",
                              period=period, label="replica lag (ms)" if aurora else "replica lag (s)")],
        ))
    return widgets
