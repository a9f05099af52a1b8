"""PostgreSQL health checks: schema, integrity and metrics tiers (see warden.health for how tiers run).

Each check group has one connection (`application_name=warden`), its statement timeout set to the
time the tier has left before every check. The monitoring user should have `pg_monitor` (to see
every session and pg_stat_statements' texts) and CONNECT on the database.

Index sizes come from `pg_class.relpages` (as of the last VACUUM / ANALYZE / CREATE INDEX), not
`pg_relation_size`: the latter waits for a lock on the relation, and a health check must never queue
behind a long ALTER or VACUUM FULL. Index usage counts are since the last statistics reset and this
server only (a replica's scans do not show on the primary).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from warden.checks import Check, CheckGroup, CheckTimedOut, Outcome, Tier
from warden.config.credentials import PostgresSecret
from warden.config.health import HealthThresholds, RequiredSchema
from warden.engines.postgres.connection import APPLICATION_NAME, connect
from warden.errors import DatabaseError, DatabaseUnavailable
from warden.models import CheckStatus

QUERY_TEXT = 200  # characters of a foreign query quoted in a report


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class PgSession:
    """One connection of a check group: each statement bounded by the time the tier has left."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def rows(self, query: str | sql.Composed, left: float, params: Any = None) -> list[dict[str, Any]]:
        try:
            with self.conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SELECT set_config('statement_timeout', %s, false)", (str(max(100, int(left * 1000))),))
                cur.execute(query, params)
                return cur.fetchall()
        except psycopg.errors.QueryCanceled:
            raise CheckTimedOut(f"PostgreSQL cancelled the query at its time limit ({left:.3g} s)") from None
        except psycopg.OperationalError as err:
            raise DatabaseUnavailable(f"PostgreSQL connection lost: {_first_line(err)}") from None
        except psycopg.Error as err:
            raise DatabaseError(f"PostgreSQL query failed: {_first_line(err)}") from None


def _session_factory(secret: PostgresSecret, connect_timeout: float) -> Any:
    @contextmanager
    def open_session(limit: float) -> Iterator[PgSession]:
        conn = connect(secret, timeout=min(limit, connect_timeout))
        try:
            yield PgSession(conn)
        finally:
            conn.close()

    return open_session


def tiers(secret: PostgresSecret, *, thresholds: HealthThresholds, schema: RequiredSchema) -> list[Tier]:
    """Schema, integrity and metrics tiers for one PostgreSQL target."""
    opener = _session_factory(secret, thresholds.connectivity_timeout_s)
    t, s = thresholds, schema

    def group(*checks: tuple[str, Any]) -> CheckGroup:
        return CheckGroup(tuple(Check(name, lambda pg, left, fn=fn: fn(pg, left, t, s)) for name, fn in checks),
                          opener)

    return [
        Tier("schema", t.schema_timeout_s, (
            group(("required_tables", required_tables), ("required_extensions", required_extensions)),
        )),
        Tier("integrity", t.integrity_timeout_s, (
            group(("invalid_indexes", invalid_indexes), ("unvalidated_constraints", unvalidated_constraints)),
        )),
        Tier("metrics", t.metrics_timeout_s, (
            group(("connections", connections), ("long_queries", long_queries),
                  ("long_transactions", long_transactions), ("blocked_queries", blocked_queries),
                  ("replication", replication)),
            group(("cache_hit_ratio", cache_hit_ratio), ("dead_tuples", dead_tuples), ("vacuum_age", vacuum_age),
                  ("wraparound", wraparound), ("database_size", database_size)),
            group(("unused_indexes", unused_indexes), ("index_bloat", index_bloat),
                  ("vector_indexes", vector_indexes)),
            group(("slow_queries", slow_queries)),
        )),
    ]


def _level(value: float, warn: float | None, fail: float | None) -> CheckStatus:
    if fail is not None and value >= fail:
        return CheckStatus.FAIL
    if warn is not None and value >= warn:
        return CheckStatus.WARN
    return CheckStatus.PASS


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


# --- schema ------------------------------------------------------------------------------------


def required_tables(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    if not s.tables:
        return CheckStatus.PASS, "no tables required", {}
    rows = pg.rows("SELECT name, to_regclass(name) IS NOT NULL AS present FROM unnest(%s::text[]) AS name",
                   left, (list(s.tables),))
    missing = [r["name"] for r in rows if not r["present"]]
    if missing:
        return CheckStatus(t.schema_violation), f"required table(s) missing: {', '.join(missing)}", {
            "missing": missing}
    return CheckStatus.PASS, f"all {len(s.tables)} required tables present", {}


def required_extensions(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    installed = {r["extname"]: r["extversion"] for r in pg.rows("SELECT extname, extversion FROM pg_extension", left)}
    missing = [e for e in s.extensions if e not in installed]
    details: dict[str, object] = {"installed": installed}
    if missing:
        return CheckStatus(t.schema_violation), f"required extension(s) missing: {', '.join(missing)}", {
            **details, "missing": missing}
    return CheckStatus.PASS, (f"all {len(s.extensions)} required extensions installed" if s.extensions
                              else f"no extensions required ({len(installed)} installed)"), details


# --- integrity ---------------------------------------------------------------------------------


def invalid_indexes(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Indexes left INVALID (a failed CREATE / REINDEX CONCURRENTLY): maintained, never used."""
    rows = pg.rows(
        "SELECT n.nspname || '.' || c.relname AS index, i.indrelid::regclass::text AS table, i.indisunique AS unique "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT i.indisvalid ORDER BY 1", left)
    details: dict[str, object] = {"invalid": rows, "metrics": {"InvalidIndexes": len(rows)}}
    if rows:
        return CheckStatus(t.invalid_object_violation), (
            f"{len(rows)} invalid index(es), rebuild with REINDEX INDEX CONCURRENTLY: "
            + ", ".join(r["index"] for r in rows[: t.sample_size])), details
    return CheckStatus.PASS, "no invalid indexes", details


def unvalidated_constraints(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Foreign key / check constraints added NOT VALID and never validated: old rows are unchecked."""
    rows = pg.rows(
        "SELECT conname AS constraint, conrelid::regclass::text AS table, "
        "CASE contype WHEN 'f' THEN 'foreign key' WHEN 'c' THEN 'check' ELSE contype::text END AS type "
        "FROM pg_constraint WHERE NOT convalidated ORDER BY 2, 1", left)
    if rows:
        return CheckStatus(t.invalid_object_violation), (
            f"{len(rows)} constraint(s) NOT VALID (existing rows unchecked): "
            + ", ".join(f"{r['table']}.{r['constraint']}" for r in rows[: t.sample_size])), {"unvalidated": rows}
    return CheckStatus.PASS, "every constraint validated", {}


# --- activity ----------------------------------------------------------------------------------

# Client sessions other than this one and Warden's own (application_name=warden).
_FOREIGN = ("backend_type = 'client backend' AND pid <> pg_backend_pid() "
            f"AND coalesce(application_name, '') <> '{APPLICATION_NAME}'")


def connections(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    row = pg.rows(
        "SELECT count(*) AS used, "
        "count(*) FILTER (WHERE state = 'active') AS active, "
        "count(*) FILTER (WHERE state LIKE 'idle in transaction%%') AS idle_in_transaction, "
        "current_setting('max_connections')::int AS max, "
        "current_setting('superuser_reserved_connections')::int AS reserved "
        "FROM pg_stat_activity WHERE backend_type = 'client backend'", left)[0]
    pct = round(100.0 * row["used"] / row["max"], 1)
    details: dict[str, object] = {**row, "used_pct": pct, "warn_pct": t.connections_warn_pct,
                                  "fail_pct": t.connections_fail_pct,
                                  "metrics": {"Connections": row["used"], "ConnectionsUsedPct": pct,
                                              "IdleInTransaction": row["idle_in_transaction"]}}
    status = _level(pct, t.connections_warn_pct, t.connections_fail_pct)
    return status, (f"{row['used']} of {row['max']} connections ({pct:.0f} %), "
                    f"{row['idle_in_transaction']} idle in transaction"), details


def _sessions(pg: PgSession, left: float, since: str, states: str, min_s: float, limit: int) -> list[dict[str, Any]]:
    return pg.rows(
        sql.SQL(
            "SELECT pid, usename AS user, datname AS database, application_name AS application, "
            "client_addr::text AS client, state, wait_event_type, wait_event, "
            "round(extract(epoch FROM now() - {since})::numeric, 1)::float AS seconds, "
            "left(query, %s) AS query "
            "FROM pg_stat_activity WHERE " + _FOREIGN + " AND state IN (" + states + ") "
            "AND {since} < now() - make_interval(secs => %s) ORDER BY {since} LIMIT %s"
        ).format(since=sql.Identifier(since)),
        left, (QUERY_TEXT, min_s, limit))


def long_queries(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    rows = _sessions(pg, left, "query_start", "'active'", t.long_query_warn_s, 1000)
    longest = rows[0]["seconds"] if rows else 0.0
    details: dict[str, object] = {
        "queries": rows[: t.sample_size], "warn_s": t.long_query_warn_s, "fail_s": t.long_query_fail_s,
        "metrics": {"LongQueries": len(rows), "LongestQuerySeconds": longest}}
    if not rows:
        return CheckStatus.PASS, f"no query running longer than {t.long_query_warn_s:g} s", details
    first = rows[0]
    return _level(longest, t.long_query_warn_s, t.long_query_fail_s), (
        f"{len(rows)} query(ies) running longer than {t.long_query_warn_s:g} s; longest pid {first['pid']} "
        f"({first['user']}@{first['database']}) {longest:.0f} s: {first['query'][:80]}"), details


def long_transactions(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    rows = _sessions(pg, left, "xact_start",
                     "'active', 'idle in transaction', 'idle in transaction (aborted)'", t.long_tx_warn_s, 1000)
    longest = rows[0]["seconds"] if rows else 0.0
    details: dict[str, object] = {
        "transactions": rows[: t.sample_size], "warn_s": t.long_tx_warn_s, "fail_s": t.long_tx_fail_s,
        "metrics": {"LongestTransactionSeconds": longest}}
    if not rows:
        return CheckStatus.PASS, f"no transaction open longer than {t.long_tx_warn_s:g} s", details
    first = rows[0]
    return _level(longest, t.long_tx_warn_s, t.long_tx_fail_s), (
        f"{len(rows)} transaction(s) open longer than {t.long_tx_warn_s:g} s; longest pid {first['pid']} "
        f"({first['state']}) {longest:.0f} s"), details


def blocked_queries(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Queries waiting on another session's lock; judged by how long the longest has been waiting."""
    rows = pg.rows(
        "SELECT a.pid, b.blocked_by, a.usename AS user, a.datname AS database, a.wait_event_type, a.wait_event, "
        "round(extract(epoch FROM now() - a.query_start)::numeric, 1)::float AS seconds, "
        "left(a.query, %s) AS query "
        "FROM pg_stat_activity a CROSS JOIN LATERAL (SELECT pg_blocking_pids(a.pid) AS blocked_by) b "
        "WHERE a.backend_type = 'client backend' AND cardinality(b.blocked_by) > 0 "
        "ORDER BY a.query_start", left, (QUERY_TEXT,))
    longest = rows[0]["seconds"] if rows else 0.0
    details: dict[str, object] = {
        "blocked": rows[: t.sample_size], "warn_s": t.blocked_warn_s, "fail_s": t.blocked_fail_s,
        "metrics": {"BlockedQueries": len(rows), "LongestBlockedSeconds": longest}}
    if not rows:
        return CheckStatus.PASS, "no blocked queries", details
    first = rows[0]
    return _level(longest, t.blocked_warn_s, t.blocked_fail_s), (
        f"{len(rows)} blocked query(ies); longest pid {first['pid']} waiting {longest:.0f} s on "
        f"pid(s) {', '.join(map(str, first['blocked_by']))}"), details


def replication(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """A replica's replay lag (0 when it has replayed everything it received); a primary's standbys."""
    row = pg.rows(
        "SELECT pg_is_in_recovery() AS replica, CASE WHEN pg_is_in_recovery() THEN CASE "
        "WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 "
        "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END END::float AS lag_s", left)[0]
    if not row["replica"]:
        standbys = pg.rows(
            "SELECT application_name AS name, client_addr::text AS client, state, sync_state, "
            "extract(epoch FROM replay_lag)::float AS replay_lag_s FROM pg_stat_replication", left)
        return CheckStatus.PASS, f"primary with {len(standbys)} standby(s)", {"role": "primary",
                                                                                "standbys": standbys}
    lag = row["lag_s"]
    details: dict[str, object] = {"role": "replica", "lag_s": lag, "warn_s": t.replication_lag_warn_s,
                                  "fail_s": t.replication_lag_fail_s}
    if lag is None:
        return CheckStatus.WARN, "replica has not replayed any transaction yet", details
    details["metrics"] = {"ReplicationLagSeconds": round(lag, 1)}
    return _level(lag, t.replication_lag_warn_s, t.replication_lag_fail_s), f"replica {lag:.0f} s behind", details


# --- statistics --------------------------------------------------------------------------------


def cache_hit_ratio(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    row = pg.rows("SELECT blks_hit, blks_read, stats_reset FROM pg_stat_database WHERE datname = current_database()",
                  left)[0]
    total = row["blks_hit"] + row["blks_read"]
    ratio = round(row["blks_hit"] / total, 4) if total else 1.0
    details: dict[str, object] = {"blocks_hit": row["blks_hit"], "blocks_read": row["blks_read"],
                                  "since": row["stats_reset"].isoformat() if row["stats_reset"] else None,
                                  "warn_below": t.cache_hit_warn, "fail_below": t.cache_hit_fail,
                                  "metrics": {"CacheHitRatio": ratio}}
    if total < t.cache_hit_min_blocks:
        return CheckStatus.PASS, f"cache hit ratio {ratio:.3f} over only {total} blocks (not judged)", details
    status = CheckStatus.PASS
    if t.cache_hit_fail is not None and ratio < t.cache_hit_fail:
        status = CheckStatus.FAIL
    elif ratio < t.cache_hit_warn:
        status = CheckStatus.WARN
    return status, f"cache hit ratio {ratio:.3f} over {total:,} blocks", details


_TABLE_STATS = (
    "SELECT schemaname || '.' || relname AS table, n_live_tup AS live, n_dead_tup AS dead, "
    "n_mod_since_analyze AS modified, "
    "round((n_dead_tup::numeric / greatest(n_live_tup + n_dead_tup, 1)), 4)::float AS dead_ratio, "
    "round((extract(epoch FROM now() - greatest(last_vacuum, last_autovacuum)) / 3600)::numeric, 1)::float "
    "AS vacuum_age_h, "
    "round((extract(epoch FROM now() - greatest(last_analyze, last_autoanalyze)) / 3600)::numeric, 1)::float "
    "AS analyze_age_h "
    "FROM pg_stat_user_tables "
)


def dead_tuples(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Tables with at least dead_tuple_min dead tuples, worst dead / (live + dead) ratio first."""
    rows = pg.rows(_TABLE_STATS + "WHERE n_dead_tup >= %s ORDER BY dead_ratio DESC, n_dead_tup DESC LIMIT 50",
                   left, (t.dead_tuple_min,))
    worst = rows[0]["dead_ratio"] if rows else 0.0
    bad = [r for r in rows if r["dead_ratio"] >= t.dead_tuple_warn_ratio]
    details: dict[str, object] = {"tables": (bad or rows)[: t.sample_size], "warn_ratio": t.dead_tuple_warn_ratio,
                                  "min_dead": t.dead_tuple_min, "metrics": {"MaxDeadTupleRatio": worst}}
    if bad:
        first = bad[0]
        vacuumed = "never" if first["vacuum_age_h"] is None else f"{first['vacuum_age_h']:.0f} h ago"
        return CheckStatus.WARN, (
            f"{len(bad)} table(s) over {t.dead_tuple_warn_ratio:.0%} dead tuples; worst {first['table']} "
            f"{first['dead_ratio']:.0%} ({first['dead']:,} dead), last vacuum {vacuumed}"), details
    return CheckStatus.PASS, f"no table over {t.dead_tuple_warn_ratio:.0%} dead tuples", details


def vacuum_age(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Tables with enough dead tuples (or changes) whose last (auto)vacuum (or analyze) is too old."""
    rows = pg.rows(
        _TABLE_STATS + "WHERE (n_dead_tup >= %(min)s AND (greatest(last_vacuum, last_autovacuum) IS NULL "
        "OR greatest(last_vacuum, last_autovacuum) < now() - make_interval(hours => %(vac)s))) "
        "OR (n_mod_since_analyze >= %(min)s AND (greatest(last_analyze, last_autoanalyze) IS NULL "
        "OR greatest(last_analyze, last_autoanalyze) < now() - make_interval(hours => %(ana)s))) "
        "ORDER BY n_dead_tup + n_mod_since_analyze DESC LIMIT 50",
        left, {"min": t.dead_tuple_min, "vac": int(t.vacuum_age_warn_h), "ana": int(t.analyze_age_warn_h)})
    details: dict[str, object] = {"tables": rows[: t.sample_size], "vacuum_warn_h": t.vacuum_age_warn_h,
                                  "analyze_warn_h": t.analyze_age_warn_h,
                                  "metrics": {"TablesNeedingVacuum": len(rows)}}
    if rows:
        return CheckStatus.WARN, (f"{len(rows)} table(s) overdue for vacuum or analyze: "
                                  + ", ".join(r["table"] for r in rows[: t.sample_size])), details
    return CheckStatus.PASS, "no table overdue for vacuum or analyze", details


def wraparound(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Transaction-ID age of the oldest unfrozen row, cluster-wide (autovacuum must freeze before 2^31)."""
    rows = pg.rows("SELECT datname AS database, age(datfrozenxid)::bigint AS xid_age, "
                   "mxid_age(datminmxid)::bigint AS multixact_age FROM pg_database ORDER BY 2 DESC", left)
    worst = rows[0]
    details: dict[str, object] = {"databases": rows[: t.sample_size], "warn_age": t.wraparound_warn_age,
                                  "fail_age": t.wraparound_fail_age, "metrics": {"WraparoundAge": worst["xid_age"]}}
    return _level(worst["xid_age"], t.wraparound_warn_age, t.wraparound_fail_age), (
        f"oldest transaction-ID age {worst['xid_age']:,} ({worst['database']}), "
        f"{100 * worst['xid_age'] / 2**31:.1f} % of the way to wraparound"), details


def database_size(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    size = pg.rows("SELECT pg_database_size(current_database()) AS bytes", left)[0]["bytes"]
    details: dict[str, object] = {"bytes": size, "warn_bytes": t.size_warn_bytes, "fail_bytes": t.size_fail_bytes,
                                  "metrics": {"DatabaseSizeBytes": size}}
    return _level(size, t.size_warn_bytes, t.size_fail_bytes), f"database size {_mib(size)}", details


# --- indexes -----------------------------------------------------------------------------------


def unused_indexes(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Never-scanned indexes that enforce nothing (not unique, not backing a constraint)."""
    rows = pg.rows(
        "SELECT s.schemaname || '.' || s.indexrelname AS index, s.relname AS table, "
        "c.relpages::bigint * current_setting('block_size')::bigint AS bytes "
        "FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid "
        "JOIN pg_class c ON c.oid = s.indexrelid "
        "WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary AND i.indisvalid "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = s.indexrelid) "
        "AND c.relpages::bigint * current_setting('block_size')::bigint >= %s ORDER BY 3 DESC", left,
        (t.unused_index_min_bytes,))
    total = sum(r["bytes"] for r in rows)
    details: dict[str, object] = {"indexes": rows[: max(t.sample_size, 10)], "count": len(rows),
                                  "min_bytes": t.unused_index_min_bytes, "warn_bytes": t.unused_index_warn_bytes,
                                  "metrics": {"UnusedIndexBytes": total}}
    status = _level(total, t.unused_index_warn_bytes, None) if rows else CheckStatus.PASS
    return status, (f"{len(rows)} unused index(es), {_mib(total)}" if rows else "no unused indexes"), details


# Expected size of a b-tree from its row count and the columns' average widths (pg_stats): tuple =
# 8-byte header + data, aligned to 8, plus a 4-byte line pointer; a page has 8 KiB less 24 bytes of
# header and 16 of b-tree special space, filled to the fillfactor (90 by default). Expression
# indexes and columns without statistics are left out: there is nothing to estimate them from.
_BLOAT = """
WITH idx AS (
  SELECT c.oid, n.nspname, c.relname AS index, t.relname AS tbl, i.indrelid, i.indkey::int2[] AS cols,
         c.relpages::bigint AS pages, c.reltuples::float8 AS tuples,
         current_setting('block_size')::int AS bs,
         coalesce((SELECT substring(o FROM 'fillfactor=(\\d+)')::int FROM unnest(c.reloptions) o
                   WHERE o LIKE 'fillfactor=%%'), 90) AS ff
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam
  WHERE a.amname = 'btree' AND c.relpages > 1 AND i.indisvalid
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
    AND 0 <> ALL (i.indkey::int2[])
), width AS (
  SELECT idx.oid, sum(st.avg_width)::float8 AS w
  FROM idx CROSS JOIN LATERAL unnest(idx.cols) AS k(attnum)
  JOIN pg_attribute att ON att.attrelid = idx.indrelid AND att.attnum = k.attnum
  LEFT JOIN pg_stats st ON st.schemaname = idx.nspname AND st.tablename = idx.tbl AND st.attname = att.attname
  GROUP BY idx.oid HAVING count(st.avg_width) = count(*)
), est AS (
  SELECT idx.nspname || '.' || idx.index AS index, idx.tbl AS table, idx.pages, idx.bs,
         1 + ceil(idx.tuples * (8 * ceil((8 + width.w) / 8) + 4) / ((idx.bs - 40) * idx.ff / 100.0)) AS expected
  FROM idx JOIN width USING (oid)
)
SELECT index, "table", pages * bs AS bytes, greatest(pages - expected, 0)::bigint * bs AS bloat_bytes,
       round(greatest(pages - expected, 0)::numeric / pages, 3)::float AS bloat_ratio
FROM est ORDER BY bloat_bytes DESC LIMIT 50
"""


def index_bloat(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Estimated wasted space of b-tree indexes (see _BLOAT); REINDEX CONCURRENTLY reclaims it."""
    rows = pg.rows(_BLOAT, left)
    bloated = [r for r in rows
               if r["bloat_ratio"] >= t.index_bloat_warn_ratio and r["bloat_bytes"] >= t.index_bloat_min_bytes]
    total = sum(r["bloat_bytes"] for r in bloated)
    details: dict[str, object] = {"bloated": bloated[: t.sample_size], "estimated": len(rows),
                                  "warn_ratio": t.index_bloat_warn_ratio, "min_bytes": t.index_bloat_min_bytes,
                                  "metrics": {"BloatedIndexBytes": total}}
    if bloated:
        first = bloated[0]
        return CheckStatus.WARN, (
            f"{len(bloated)} bloated index(es), ~{_mib(total)} reclaimable; worst {first['index']} "
            f"~{first['bloat_ratio']:.0%} of {_mib(first['bytes'])} (estimate)"), details
    return CheckStatus.PASS, f"no bloated b-tree index (estimated {len(rows)})", details


def vector_indexes(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """pgvector HNSW and IVFFlat indexes: size and scans (information; their health is the app's)."""
    rows = pg.rows(
        "SELECT n.nspname || '.' || c.relname AS index, i.indrelid::regclass::text AS table, a.amname AS method, "
        "c.relpages::bigint * current_setting('block_size')::bigint AS bytes, "
        "coalesce(st.idx_scan, 0) AS scans, coalesce(st.idx_tup_read, 0) AS tuples_read "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_stat_user_indexes st ON st.indexrelid = i.indexrelid "
        "WHERE a.amname IN ('hnsw', 'ivfflat') ORDER BY 4 DESC", left)
    total, scans = sum(r["bytes"] for r in rows), sum(r["scans"] for r in rows)
    details: dict[str, object] = {"indexes": rows[:20],
                                  "metrics": {"VectorIndexBytes": total, "VectorIndexScans": scans}}
    if not rows:
        return CheckStatus.PASS, "no pgvector indexes", details
    return CheckStatus.PASS, f"{len(rows)} pgvector index(es), {_mib(total)}, {scans:,} scans", details


# --- pg_stat_statements ------------------------------------------------------------------------


def slow_queries(pg: PgSession, left: float, t: HealthThresholds, s: RequiredSchema) -> Outcome:
    """Statements of this database whose mean execution time is over slow_query_warn_ms (cumulative
    since pg_stat_statements was last reset). Only when the extension is installed in the database."""
    found = pg.rows("SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                    "WHERE e.extname = 'pg_stat_statements'", left)
    if not found:
        return CheckStatus.PASS, "pg_stat_statements is not installed in this database", {"installed": False}
    view = sql.Identifier(found[0]["schema"], "pg_stat_statements")
    try:
        rows = pg.rows(sql.SQL(
            "SELECT queryid::text AS queryid, calls, round(mean_exec_time::numeric, 1)::float AS mean_ms, "
            "round(total_exec_time::numeric, 1)::float AS total_ms, rows, left(query, %s) AS query "
            "FROM {view} WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND calls >= %s AND mean_exec_time >= %s ORDER BY mean_exec_time DESC LIMIT 50").format(view=view),
            left, (QUERY_TEXT, t.slow_query_min_calls, t.slow_query_warn_ms))
    except DatabaseError as err:  # e.g. installed but not in shared_preload_libraries
        return CheckStatus.WARN, f"pg_stat_statements installed but unreadable: {err}", {"installed": True}
    details: dict[str, object] = {"installed": True, "slow": rows[: max(t.sample_size, 10)],
                                  "warn_ms": t.slow_query_warn_ms, "min_calls": t.slow_query_min_calls,
                                  "metrics": {"SlowQueries": len(rows)}}
    if rows:
        first = rows[0]
        return CheckStatus.WARN, (f"{len(rows)} statement(s) averaging over {t.slow_query_warn_ms:g} ms; slowest "
                                  f"{first['mean_ms']:,.0f} ms x {first['calls']}: {first['query'][:80]}"), details
    return CheckStatus.PASS, f"no statement averaging over {t.slow_query_warn_ms:g} ms", details
