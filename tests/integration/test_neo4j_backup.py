"""Neo4j logical backup and restore (warden.engines.neo4j_backup) against real Neo4j 5.26 Community
servers: a source and an empty target of this module's own (the session's shared server stays
untouched), so a round trip really crosses servers."""

from __future__ import annotations

import gzip
import io
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import pytest
import pytz
from neo4j.spatial import CartesianPoint, WGS84Point
from neo4j.time import Date, DateTime, Duration, Time

from local.neo4j import LocalNeo4j, Neo4jEndpoint
from warden.config.credentials import Neo4jSecret
from warden.engines import neo4j as nb
from warden.engines.base import RestoreRefused
from warden.engines.neo4j import close_drivers
from warden.engines.neo4j import format as fmt
from warden.engines.neo4j import restore as restore_module
from warden.errors import DatabaseUnavailable

pytestmark = pytest.mark.integration

PASSWORD = "backup-test-password"


# --- servers and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Neo4jEndpoint, Neo4jEndpoint]]:
    """Source and target, started side by side (start-up is mostly waiting)."""
    root = tmp_path_factory.mktemp("neo4j-backup")
    pair = [LocalNeo4j(Path(root) / name, password=PASSWORD, heap="512m", pagecache="128m")
            for name in ("source", "target")]
    errors: list[BaseException] = []

    def start(server: LocalNeo4j) -> None:
        try:
            server.start()
        except BaseException as err:  # surfaced below, in the fixture's thread
            errors.append(err)

    threads = [threading.Thread(target=start, args=(s,)) for s in pair]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if errors:
            raise errors[0]
        yield pair[0].endpoint, pair[1].endpoint
    finally:
        close_drivers()
        for server in pair:
            server.stop()


def secret_of(ep: Neo4jEndpoint) -> Neo4jSecret:
    return Neo4jSecret(uri=ep.uri, username=ep.username, password=ep.password)


@pytest.fixture(scope="module")
def drivers(servers: tuple[Neo4jEndpoint, Neo4jEndpoint]) -> Iterator[tuple[neo4j.Driver, neo4j.Driver]]:
    pair = tuple(neo4j.GraphDatabase.driver(ep.uri, auth=(ep.username, ep.password),
                                            notifications_min_severity="OFF") for ep in servers)
    try:
        yield pair  # type: ignore[misc]
    finally:
        for d in pair:
            d.close()


@pytest.fixture
def source(servers: tuple[Neo4jEndpoint, Neo4jEndpoint], drivers: tuple[neo4j.Driver, neo4j.Driver]) -> Iterator[
        tuple[Neo4jSecret, neo4j.Driver]]:
    """The source server, emptied before the test."""
    wipe(drivers[0])
    yield secret_of(servers[0]), drivers[0]


@pytest.fixture
def target(servers: tuple[Neo4jEndpoint, Neo4jEndpoint], drivers: tuple[neo4j.Driver, neo4j.Driver]) -> Iterator[
        tuple[Neo4jSecret, neo4j.Driver]]:
    """The target server, emptied before the test."""
    wipe(drivers[1])
    yield secret_of(servers[1]), drivers[1]


def run(driver: neo4j.Driver, query: str, **params: Any) -> list[neo4j.Record]:
    return driver.execute_query(query, params, database_="neo4j")[0]


def wipe(driver: neo4j.Driver) -> None:
    for r in run(driver, "SHOW CONSTRAINTS YIELD name"):
        run(driver, f"DROP CONSTRAINT `{r['name']}`")
    for r in run(driver, "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP'"):
        run(driver, f"DROP INDEX `{r['name']}`")
    with driver.session(database="neo4j") as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()


def export(secret: Neo4jSecret, **options: Any) -> tuple[nb.ExportResult, bytes]:
    out = io.BytesIO()
    result = nb.export_backup(secret, out, **options)
    return result, out.getvalue()


def manifest_of(result: nb.ExportResult) -> dict[str, Any]:
    """What the backup flow stores beside the data (the fields restore reads)."""
    return {"format_version": result.format_version, "counts": result.counts, "schema": result.schema}


def chunked(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def canon(value: Any) -> Any:
    """A hashable, exact picture of a driver value: its type, repr (NaN as nan, -0.0 with its sign,
    temporals with their tzinfo and zone, points with their class) and SRID where there is one."""
    if isinstance(value, list):
        return ("list", tuple(canon(v) for v in value))
    return (type(value).__qualname__, repr(value), getattr(value, "srid", None))


def graph_of(driver: neo4j.Driver) -> tuple[Counter[Any], Counter[Any]]:
    """Every node (labels + properties) and relationship (type, endpoints by `key`, properties)."""
    nodes = Counter(
        (frozenset(r["labels"]), tuple(sorted((k, canon(v)) for k, v in r["props"].items())))
        for r in run(driver, "MATCH (n) RETURN labels(n) AS labels, properties(n) AS props"))
    rels = Counter(
        (r["type"], r["a"], r["b"], tuple(sorted((k, canon(v)) for k, v in r["props"].items())))
        for r in run(driver, "MATCH (a)-[r]->(b) RETURN type(r) AS type, a.key AS a, b.key AS b, "
                             "properties(r) AS props"))
    return nodes, rels


def server_types_of(driver: neo4j.Driver) -> set[tuple[Any, ...]]:
    """What the server itself says each property is (valueType) and, for temporals, its text."""
    rows = run(driver, """
        MATCH (n) UNWIND keys(n) AS k
        RETURN n.key AS node, k, valueType(n[k]) AS type,
               CASE WHEN valueType(n[k]) STARTS WITH 'ZONED' OR valueType(n[k]) STARTS WITH 'LOCAL'
                      OR valueType(n[k]) STARTS WITH 'DATE' OR valueType(n[k]) STARTS WITH 'DURATION'
                    THEN toString(n[k]) END AS text""")
    return {(r["node"], r["k"], r["type"], r["text"]) for r in rows}


def schema_of(driver: neo4j.Driver) -> tuple[set[str], set[str]]:
    constraints = {r["s"] for r in run(driver, "SHOW CONSTRAINTS YIELD createStatement AS s RETURN s")}
    indexes = {r["s"] for r in run(driver, "SHOW INDEXES YIELD type, owningConstraint, createStatement AS s "
                                           "WHERE type <> 'LOOKUP' AND owningConstraint IS NULL RETURN s")}
    return constraints, indexes


# --- the graph ------------------------------------------------------------------------------

WARSAW = pytz.timezone("Europe/Warsaw")
LONG_TEXT = "Zażółć gęślą jaźń 😀 \U0001f680 \x00 " * 5000 + "end"

# Scalars as parameters (the driver serializes them), temporals and points as Cypher literals too.
SCALARS: dict[str, Any] = {
    "s_empty": "", "s_long": LONG_TEXT, "s_nul": "a\x00b", "s_astral": "😀🚀𝄞",
    "b_true": True, "b_false": False,
    "i_max": 2**63 - 1, "i_min": -(2**63), "i_zero": 0,
    "f_nan": math.nan, "f_inf": math.inf, "f_ninf": -math.inf, "f_negzero": -0.0, "f_pi": math.pi,
    "f_tiny": 5e-324, "f_huge": 1.7976931348623157e308,
    "bytes": bytes(range(256)), "bytes_empty": b"",
    "p_date": Date(2024, 2, 29), "p_time": Time(12, 34, 56, 123456789, tzinfo=pytz.FixedOffset(-330)),
    "p_localtime": Time(23, 59, 59, 999999999),
    "p_datetime_zone": WARSAW.localize(DateTime(2024, 10, 27, 2, 30, 0, 1), is_dst=False),
    "p_duration": Duration(months=-7, days=40, seconds=-1, nanoseconds=3),
    "l_str": ["a", "😀", "", "\x00"], "l_int": [2**63 - 1, -(2**63), 0], "l_float": [math.nan, -0.0, math.inf, 1.5],
    "l_bool": [True, False, True], "l_empty": [],
    "l_date": [Date(1, 1, 1), Date(9999, 12, 31)],
    "l_point": [CartesianPoint((1.0, 2.0)), CartesianPoint((-3.5, 4.25))],
    "l_wgs3d": [WGS84Point((21.01, 52.23, 110.5)), WGS84Point((-0.1, 51.5, -2.0))],
}
LITERALS = """
    time: time('12:34:56.123456789+02:00'), localtime: localtime('00:00:00.000000001'),
    date: date('1970-01-01'), date_old: date('0001-01-01'),
    datetime_offset: datetime('2024-03-31T01:59:59.999999999-05:30'),
    datetime_utc: datetime('2024-01-01T00:00:00Z'),
    datetime_zone: datetime('2024-10-27T02:30:00.000000001[Europe/Warsaw]'),
    datetime_zone_summer: datetime('2024-07-01T12:00:00.5[Europe/Warsaw]'),
    datetime_zone_ny: datetime('1901-12-13T20:45:52.123456789[America/New_York]'),
    localdatetime: localdatetime('1969-12-31T23:59:59.999999999'),
    duration: duration({months: 14, days: -3, seconds: 70000, nanoseconds: -5}),
    duration_big: duration('P1000Y11M30DT23H59M59.999999999S'),
    point_c2: point({x: 1.5, y: -2.25}), point_c3: point({x: 1.0, y: 2.0, z: -3.0}),
    point_g2: point({longitude: 21.01, latitude: 52.23}),
    point_g3: point({longitude: 21.01, latitude: 52.23, height: 110.5}),
    l_time: [time('01:00+01:00'), time('23:59:59.999999999-12:00')],
    l_localtime: [localtime('01:02:03'), localtime('04:05:06.000000007')],
    l_datetime: [datetime('2024-10-27T02:30[Europe/Warsaw]'), datetime('2024-01-01T00:00+05:45')],
    l_localdatetime: [localdatetime('2000-01-01T00:00'), localdatetime('2038-01-19T03:14:08.000000001')],
    l_duration: [duration('P1D'), duration('PT0.000000001S')],
    l_point_g2: [point({longitude: 1.0, latitude: 2.0}), point({longitude: 3.0, latitude: 4.0})],
    l_point_c3: [point({x: 1.0, y: 2.0, z: 3.0})]
"""
SCHEMA = [
    "CREATE CONSTRAINT person_key FOR (p:Person) REQUIRE p.key IS UNIQUE",
    "CREATE CONSTRAINT employee_no FOR (p:Employee) REQUIRE (p.dept, p.no) IS UNIQUE",
    "CREATE CONSTRAINT works_at_uid FOR ()-[r:WORKS_AT]-() REQUIRE r.uid IS UNIQUE",
    "CREATE INDEX person_name FOR (p:Person) ON (p.name)",
    "CREATE INDEX person_name_age FOR (p:Person) ON (p.name, p.age)",
    "CREATE INDEX knows_since FOR ()-[r:KNOWS]-() ON (r.since)",
    "CREATE TEXT INDEX person_bio FOR (p:Person) ON (p.bio)",
    "CREATE POINT INDEX place_loc FOR (p:Place) ON (p.loc) "
    "OPTIONS {indexConfig: {`spatial.cartesian.min`: [-100.0, -100.0], `spatial.cartesian.max`: [100.0, 100.0]}}",
    "CREATE FULLTEXT INDEX doc_text FOR (n:Doc|Person) ON EACH [n.title, n.bio] "
    "OPTIONS {indexConfig: {`fulltext.analyzer`: 'english'}}",
    "CREATE FULLTEXT INDEX rel_notes FOR ()-[r:KNOWS|LIKES]-() ON EACH [r.note]",
    "CREATE VECTOR INDEX doc_embedding FOR (n:Doc) ON (n.embedding) "
    "OPTIONS {indexConfig: {`vector.dimensions`: 4, `vector.similarity_function`: 'cosine'}}",
]


def build_graph(driver: neo4j.Driver, *, bulk: int = 1500) -> None:
    """Every value type (as a property and in lists) on a node and a relationship; nodes with several
    labels, one label, none, odd labels; many relationship types, self-loops, parallel relationships;
    `bulk` plain nodes in several label sets with two relationships each; the schema above."""
    for statement in SCHEMA:
        run(driver, statement)
    run(driver, f"CREATE (n:Person:Employee:`Odd Label`:`Back``tick`:Ünïcødé {{key: 'all', dept: 'x', no: 1, "
                f"{LITERALS}}}) SET n += $scalars", scalars=SCALARS)
    run(driver, "CREATE (:Place {key: 'place', loc: point({x: 10.0, y: -10.0}), name: 'P'})")
    run(driver, "CREATE ({key: 'nolabel'})")  # no label at all
    run(driver, "CREATE (:Doc {key: 'doc', title: 'Backups', embedding: [0.1, 0.2, 0.3, 0.4]})")
    run(driver, "CREATE (:Person {key: 'empty-ish'})")  # only the key
    run(driver, f"""
        MATCH (a {{key: 'all'}}), (p {{key: 'place'}}), (x {{key: 'nolabel'}}), (d {{key: 'doc'}})
        CREATE (a)-[:KNOWS {{since: 2001, note: 'first', {LITERALS}}}]->(p),
               (a)-[:KNOWS {{since: 2001, note: 'first'}}]->(p),
               (a)-[:KNOWS {{since: 2001, note: 'first'}}]->(p),
               (a)-[:SELF]->(a), (a)-[:SELF]->(a),
               (x)-[:`HAS SPACE` {{w: -0.0}}]->(x),
               (d)-[:WORKS_AT {{uid: 1}}]->(p), (p)-[:WORKS_AT {{uid: 2}}]->(d),
               (x)-[:LIKES {{note: 'zażółć'}}]->(d), (d)-[:`Ünï`]->(x)
        WITH a MATCH ()-[r:KNOWS]->() WHERE r.time IS NOT NULL SET r += $scalars""", scalars=SCALARS)
    run(driver, """
        UNWIND range(1, $bulk) AS i
        CREATE (n:Bulk {key: 'bulk-' + i, i: i, name: 'node ' + i})
        WITH n, i
        CALL (n, i) {
          WITH n, i WHERE i % 3 = 0 SET n:Person, n.age = i % 90, n.bio = 'bio ' + i
        }
        CALL (n, i) {
          WITH n, i WHERE i % 5 = 0 SET n.when = datetime({epochSeconds: i * 86400, nanosecond: i})
        }
        """, bulk=bulk)
    run(driver, """
        MATCH (n:Bulk) WITH n ORDER BY n.i WITH collect(n) AS ns
        UNWIND range(0, size(ns) - 1) AS j
        WITH ns[j] AS a, ns[(j * 7) % size(ns)] AS b
        CREATE (a)-[:NEXT {w: a.i * 0.5}]->(b), (a)-[:REL_TYPE_2]->(b)""")
    run(driver, "CALL db.awaitIndexes(300)")


# --- format (no server needed, but cheap enough to live here) --------------------------------


@pytest.mark.parametrize("value", [
    *SCALARS.values(),
    Time(0, 0, 0, 0, tzinfo=pytz.utc), DateTime(1969, 12, 31, 23, 59, 59, 999999999),
    CartesianPoint((1.0, 2.0, 3.0)), WGS84Point((1.0, 2.0)),
], ids=lambda v: type(v).__name__)
def test_format_round_trips_each_value_exactly(value: Any) -> None:
    # When
    line = json.dumps(fmt.encode_value(value), allow_nan=False)
    back = fmt.decode_value(json.loads(line))
    # Then
    assert canon(back) == canon(value)


def test_format_writes_utc_as_the_offset_z_not_a_zone_id() -> None:
    # Given: how the driver hydrates both `datetime('...Z')` and `datetime('...[UTC]')`
    value = DateTime(2024, 1, 1, 0, 0, 0, 1, tzinfo=pytz.utc)
    # When
    encoded = fmt.encode_value(value)
    back = fmt.decode_value(encoded)
    # Then: an offset (the driver sends a fixed-offset tzinfo as an offset, a pytz zone as a zone id)
    assert encoded == {"I": [1704067200, 1, 0]}
    assert back == value and back.utcoffset().total_seconds() == 0
    assert getattr(back.tzinfo, "zone", None) is None and getattr(back.tzinfo, "key", None) is None


def test_format_reads_records_across_any_chunking() -> None:
    # Given
    out = io.BytesIO()
    writer = fmt.ArchiveWriter(out, flush_bytes=100)
    records = [["header", {"format": fmt.FORMAT_VERSION}], ["N", ["A"], ["s"], [[i, "x" * i] for i in range(50)]],
               ["end", {}]]
    for record in records:
        writer.record(record)
    writer.close()
    data = out.getvalue()
    # When / Then
    assert list(fmt.iter_records(chunked(data, 1))) == records
    assert list(fmt.iter_records([data])) == records
    with pytest.raises(fmt.ArchiveError, match="truncated"):
        list(fmt.iter_records([data[: len(data) // 2]]))


# --- round trip -------------------------------------------------------------------------------


def test_round_trip_restores_every_value_label_relationship_and_index_exactly(
        source: tuple[Neo4jSecret, neo4j.Driver], target: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given
    src, src_driver = source
    dst, dst_driver = target
    build_graph(src_driver)
    # When: small batches, so nodes and relationships span many records and restore batches
    result, data = export(src, batch_size=500)
    restored = nb.restore_backup(dst, chunked(data), manifest_of(result), batch_rows=700)
    # Then
    assert graph_of(dst_driver) == graph_of(src_driver)
    assert server_types_of(dst_driver) == server_types_of(src_driver)
    assert schema_of(dst_driver) == schema_of(src_driver)
    assert len(schema_of(src_driver)[1]) == 8 and len(schema_of(src_driver)[0]) == 3
    assert restored.counts == result.counts == nb.count_objects(src)
    assert result.counts["nodes"] == 1505 and result.counts["relationships"] == 3010
    assert result.counts["label:Person"] == 502 and result.counts["type:SELF"] == 2
    assert result.details["writes_during_backup"] is False
    assert result.consistency.startswith("point-in-time")
    assert (result.method, result.format_version, result.extension) == ("neo4j-logical", "warden-neo4j/1", "wnj.gz")
    # No trace of the import machinery.
    assert not run(dst_driver, "MATCH (n) WHERE n:__WardenImport OR n.__wid IS NOT NULL RETURN n LIMIT 1")
    assert "warden_import_wid" not in str(run(dst_driver, "SHOW CONSTRAINTS YIELD name"))


def test_restored_values_keep_zone_ids_offsets_srids_and_duration_parts(
        source: tuple[Neo4jSecret, neo4j.Driver], target: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given
    src, src_driver = source
    dst, dst_driver = target
    build_graph(src_driver, bulk=10)
    result, data = export(src)
    # When
    nb.restore_backup(dst, [data], manifest_of(result))
    # Then: what the target server itself holds
    row = run(dst_driver, """
        MATCH (n {key: 'all'}) RETURN n.datetime_zone.timezone AS zone, toString(n.datetime_zone) AS zoned,
          n.datetime_utc.timezone AS utc, n.datetime_offset.offset AS offset, n.time.offset AS time_offset,
          n.duration.months AS months, n.duration.days AS days, n.duration.seconds AS seconds,
          n.duration.nanosecondsOfSecond AS nanos, n.point_g3.srid AS g3, n.point_c2.srid AS c2,
          n.l_point_g2[0].srid AS list_srid, n.localtime AS localtime, n.f_negzero AS negzero,
          n.f_nan AS nan, size(n.s_long) AS long, n.i_min AS i_min""")[0]
    assert row["zone"] == "Europe/Warsaw" and row["zoned"] == "2024-10-27T02:30:00.000000001+02:00[Europe/Warsaw]"
    assert row["utc"] == "Z" and row["offset"] == "-05:30" and row["time_offset"] == "+02:00"
    assert (row["months"], row["days"], row["seconds"], row["nanos"]) == (14, -3, 69999, 999999995)
    assert (row["g3"], row["c2"], row["list_srid"]) == (4979, 7203, 4326)
    assert row["localtime"] == Time(0, 0, 0, 1)
    assert math.copysign(1.0, row["negzero"]) == -1.0 and math.isnan(row["nan"])
    assert row["long"] == len(LONG_TEXT) and row["i_min"] == -(2**63)


def test_many_optional_property_combinations_restore_in_few_batches(
        source: tuple[Neo4jSecret, neo4j.Driver], target: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given: 64 key sets over 640 nodes and relationships (6 optional properties, a few rows per key set)
    src, src_driver = source
    dst, dst_driver = target
    run(src_driver, """
        UNWIND range(0, 639) AS i
        CREATE (n:Opt {key: 'opt-' + i})
        SET n.a = CASE WHEN i % 2 = 1 THEN i END, n.b = CASE WHEN (i / 2) % 2 = 1 THEN 'b' + i END,
            n.c = CASE WHEN (i / 4) % 2 = 1 THEN i * 0.5 END, n.d = CASE WHEN (i / 8) % 2 = 1 THEN date() END,
            n.e = CASE WHEN (i / 16) % 2 = 1 THEN [i] END, n.f = CASE WHEN (i / 32) % 2 = 1 THEN true END""")
    run(src_driver, """
        MATCH (n:Opt) WITH collect(n) AS ns UNWIND range(0, size(ns) - 1) AS j
        WITH ns[j] AS a, ns[(j * 13 + 5) % size(ns)] AS b, j
        CREATE (a)-[r:LINK]->(b)
        SET r.x = CASE WHEN j % 2 = 1 THEN j END, r.y = CASE WHEN (j / 2) % 8 = 1 THEN 'y' END""")
    result, data = export(src, batch_size=128)
    # When
    restored = nb.restore_backup(dst, chunked(data), manifest_of(result), batch_rows=400)
    # Then: exact, and far fewer transactions than key sets (small groups go together, with maps)
    assert graph_of(dst_driver) == graph_of(src_driver)
    assert restored.counts == result.counts
    assert restored.details["batches"] <= 8


# --- refusals and replace ---------------------------------------------------------------------


def test_restore_refuses_a_database_that_is_not_empty_and_changes_nothing(
        source: tuple[Neo4jSecret, neo4j.Driver], target: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given
    src, src_driver = source
    dst, dst_driver = target
    build_graph(src_driver, bulk=10)
    result, data = export(src)
    run(dst_driver, "CREATE (:Existing {key: 'keep'})-[:STAYS]->(:Existing {key: 'me'})")
    before = graph_of(dst_driver), schema_of(dst_driver)
    # When / Then
    with pytest.raises(RestoreRefused, match="not empty"):
        nb.restore_backup(dst, [data], manifest_of(result))
    assert (graph_of(dst_driver), schema_of(dst_driver)) == before


def test_restore_refuses_schema_only_database(
        source: tuple[Neo4jSecret, neo4j.Driver], target: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given: no data, but an index of its own
    src, _ = source
    dst, dst_driver = target
    result, data = export(src)
    run(dst_driver, "CREATE INDEX mine FOR (n:Mine) ON (n.x)")
    # When / Then
    assert not nb.is_empty(dst)
    with pytest.raises(RestoreRefused, match="1 indexes"):
        nb.restore_backup(dst, [data], manifest_of(result))
    assert schema_of(dst_driver)[1] == {"CREATE RANGE INDEX `mine` FOR (n:`Mine`) ON (n.`x`)"}


def archive_with_header(header: dict[str, Any]) -> bytes:
    lines = [json.dumps(["header", header]), json.dumps(["end", {"counts": {}}])]
    return gzip.compress(("\n".join(lines) + "\n").encode())


@pytest.mark.parametrize(("data", "manifest", "reason"), [
    (archive_with_header({"format": "warden-neo4j/99", "schema": {"constraints": [], "indexes": []}}),
     {}, "unknown archive format 'warden-neo4j/99'"),
    (archive_with_header({"format": "warden-neo4j/1", "schema": {"constraints": [], "indexes": []}}),
     {"format_version": "warden-neo4j/2"}, "unknown backup format 'warden-neo4j/2'"),
    (b"PGDMP this is not ours", {}, "not a gzip stream"),
    (gzip.compress(b'{"not": "a record"}\n'), {}, "not a \\[kind"),
    (b"", {}, "empty"),
    (archive_with_header({"format": "warden-neo4j/1", "schema": {"constraints": [
        {"name": "k", "type": "NODE_KEY", "createStatement": "CREATE CONSTRAINT k FOR (n:A) REQUIRE n.x IS NODE KEY"}],
        "indexes": []}}), {}, "cannot create \\(k\\)"),
], ids=["unknown-archive-format", "unknown-manifest-format", "not-gzip", "not-records", "empty", "enterprise-only"])
def test_restore_refuses_what_it_cannot_read_before_touching_anything(
        target: tuple[Neo4jSecret, neo4j.Driver], data: bytes, manifest: dict[str, Any], reason: str) -> None:
    # Given: a target that is not empty, and replace=True: a refusal must come before the wipe
    dst, dst_driver = target
    run(dst_driver, "CREATE (:Existing {key: 'keep'})")
    # When / Then
    with pytest.raises(RestoreRefused, match=reason):
        nb.restore_backup(dst, chunked(data, 7), manifest, replace=True)
    assert run(dst_driver, "MATCH (n) RETURN collect(n.key) AS keys")[0]["keys"] == ["keep"]


def test_restore_with_replace_empties_the_database_first(
        source: tuple[Neo4jSecret, neo4j.Driver], target: tuple[Neo4jSecret, neo4j.Driver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: a target holding other data (24 000 nodes), a constraint and an index; the pause after
    # a large wipe set to start at that many nodes, and when the wipe ends / the first batch goes seen
    src, src_driver = source
    dst, dst_driver = target
    build_graph(src_driver, bulk=200)
    result, data = export(src)
    run(dst_driver, "CREATE CONSTRAINT old_key FOR (n:Old) REQUIRE n.key IS UNIQUE")
    run(dst_driver, "CREATE INDEX old_idx FOR ()-[r:OLD]-() ON (r.x)")
    run(dst_driver, "UNWIND range(1, 12000) AS i CREATE (:Old {key: i})-[:OLD {x: i}]->(:Old {key: -i})")
    monkeypatch.setattr(restore_module, "WIPE_SETTLE_NODES", 24_000)
    monkeypatch.setattr(restore_module, "WIPE_SETTLE_S", 0.5)
    seen: dict[str, float] = {}
    wipe, submit = restore_module._wipe, restore_module._Sender.submit

    def timed_wipe(*args: Any) -> None:
        wipe(*args)
        seen["wiped"] = time.monotonic()

    def first_submit(self: Any, *args: Any) -> None:
        seen.setdefault("first_batch", time.monotonic())
        submit(self, *args)

    monkeypatch.setattr(restore_module, "_wipe", timed_wipe)
    monkeypatch.setattr(restore_module._Sender, "submit", first_submit)
    # When
    restored = nb.restore_backup(dst, chunked(data), manifest_of(result), replace=True)
    # Then: emptied, the server's id maintenance given its pause, then loaded
    assert restored.details["replaced"] is True
    assert seen["first_batch"] - seen["wiped"] >= 0.5
    assert graph_of(dst_driver) == graph_of(src_driver)
    assert schema_of(dst_driver) == schema_of(src_driver)
    assert restored.counts == result.counts


def test_restore_of_a_truncated_archive_fails_clearly(
        source: tuple[Neo4jSecret, neo4j.Driver], target: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given
    src, src_driver = source
    dst, _ = target
    build_graph(src_driver, bulk=1000)
    result, data = export(src, batch_size=200)
    # When / Then
    with pytest.raises(nb.RestoreFailed, match=r"truncated|partial restore"):
        nb.restore_backup(dst, chunked(data[: int(len(data) * 0.9)], 4096), manifest_of(result))


def test_restore_fails_when_the_manifest_counts_disagree(
        source: tuple[Neo4jSecret, neo4j.Driver], target: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given: a manifest that claims one node more than the archive holds
    src, src_driver = source
    dst, _ = target
    build_graph(src_driver, bulk=10)
    result, data = export(src)
    manifest = manifest_of(result)
    manifest["counts"] = {**result.counts, "nodes": result.counts["nodes"] + 1}
    # When / Then
    with pytest.raises(nb.RestoreFailed, match=r"nodes: expected \d+, found \d+"):
        nb.restore_backup(dst, [data], manifest)


# --- consistency ------------------------------------------------------------------------------


def test_writes_during_export_are_detected_and_dangling_relationships_skipped(
        source: tuple[Neo4jSecret, neo4j.Driver], target: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given: a few thousand nodes; as soon as the node section is written, another session adds 3
    # nodes and links each to an exported node (those 3 relationships have an endpoint the archive lacks)
    src, src_driver = source
    dst, dst_driver = target
    run(src_driver, "UNWIND range(1, 3000) AS i CREATE (:Item {key: 'item-' + i})")
    run(src_driver, "MATCH (n:Item) WITH collect(n) AS ns UNWIND range(0, size(ns) - 1) AS j "
                    "WITH ns[j] AS a, ns[(j + 1) % size(ns)] AS b CREATE (a)-[:NEXT]->(b)")

    def write_concurrently(section: str, count: int) -> None:
        if section == "nodes":
            run(src_driver, "UNWIND range(1, 3) AS i MATCH (old:Item {key: 'item-' + i}) "
                            "CREATE (:Late {key: 'late-' + i})-[:POINTS_AT]->(old)")

    # When
    result, data = export(src, batch_size=256, on_section=write_concurrently)
    # Then
    assert result.details["writes_during_backup"] is True
    assert result.details["dangling_relationships_skipped"] == 3
    assert result.details["concurrent_changes"] == 3 + 3 + 3  # nodes + relationships + skipped
    assert result.consistency.startswith("not point-in-time: 9 concurrent changes observed")
    assert "quiesced" in result.details["note"]
    assert result.counts["nodes"] == 3000 and result.counts["relationships"] == 3000
    assert "label:Late" not in result.counts and "type:POINTS_AT" not in result.counts
    # And what was exported restores, consistent with its own counts.
    restored = nb.restore_backup(dst, [data], manifest_of(result))
    assert restored.counts == result.counts
    assert not run(dst_driver, "MATCH (n:Late) RETURN n LIMIT 1")


def test_a_property_change_during_export_is_detected_though_counts_do_not_move(
        source: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given
    src, src_driver = source
    run(src_driver, "UNWIND range(1, 500) AS i CREATE (:Item {key: 'item-' + i, v: 0})")

    def update(section: str, count: int) -> None:
        if section == "nodes":
            run(src_driver, "MATCH (n:Item {key: 'item-1'}) SET n.v = 1")

    # When
    result, _ = export(src, on_section=update)
    # Then: the bookmark moved although every count is the same
    assert result.details["writes_during_backup"] is True
    assert result.details["concurrent_changes"] == 0
    assert result.details["counts_before"] == result.details["counts_after"]
    assert result.consistency.startswith("not point-in-time")


def test_a_quiet_export_is_point_in_time(source: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given
    src, src_driver = source
    run(src_driver, "UNWIND range(1, 500) AS i CREATE (:Item {key: 'item-' + i})-[:HAS]->(:Part)")
    # When
    result, _ = export(src)
    # Then
    assert result.details["writes_during_backup"] is False
    assert result.details["bookmark_checked"] is True
    assert result.details["counts_before"] == result.details["counts_after"] == {"nodes": 1000, "relationships": 500}
    assert result.consistency == nb.POINT_IN_TIME


def test_an_empty_database_exports_and_restores(source: tuple[Neo4jSecret, neo4j.Driver],
                                                target: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given
    src, _ = source
    dst, _ = target
    # When
    result, data = export(src)
    restored = nb.restore_backup(dst, [data], manifest_of(result))
    # Then
    assert result.counts == restored.counts == {"nodes": 0, "relationships": 0}
    assert nb.is_empty(src) and nb.is_empty(dst)


# --- errors -----------------------------------------------------------------------------------


def test_an_unreachable_server_is_database_unavailable() -> None:
    # Given: a port nobody listens on
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = Neo4jSecret(uri=f"bolt://127.0.0.1:{port}", password="whatever-password")
    # When / Then
    with pytest.raises(DatabaseUnavailable, match="unavailable"):
        nb.export_backup(secret, io.BytesIO())
    with pytest.raises(DatabaseUnavailable, match="unavailable"):
        nb.count_objects(secret)


def test_wrong_credentials_are_database_unavailable_and_never_echo_the_password(
        servers: tuple[Neo4jEndpoint, Neo4jEndpoint]) -> None:
    # Given
    secret = Neo4jSecret(uri=servers[0].uri, password="not-the-password-42")
    # When / Then
    with pytest.raises(DatabaseUnavailable, match="rejected the credentials") as raised:
        nb.export_backup(secret, io.BytesIO())
    assert "not-the-password-42" not in str(raised.value)


def test_a_failed_index_is_backed_up_with_a_warning_and_restores_with_one(
        source: tuple[Neo4jSecret, neo4j.Driver], target: tuple[Neo4jSecret, neo4j.Driver]) -> None:
    # Given a TEXT index that is FAILED in the source (a value too large to index)
    (src, src_driver), (dst, dst_driver) = source, target
    run(src_driver, "CREATE (:Doc {body: $big}), (:Doc {body: 'small'})", big="x" * 40000)
    run(src_driver, "CREATE TEXT INDEX doc_body FOR (d:Doc) ON (d.body)")
    run(src_driver, "CREATE INDEX doc_title FOR (d:Doc) ON (d.title)")
    with pytest.raises(neo4j.exceptions.Neo4jError):
        run(src_driver, "CALL db.awaitIndexes(60)")
    assert run(src_driver, "SHOW INDEXES YIELD name, state WHERE name = 'doc_body' RETURN state")[0][0] == "FAILED"
    # When it is backed up
    result, data = export(src)
    # Then the backup records each index's state and warns about the FAILED one
    states = {i["name"]: i["state"] for i in result.schema["indexes"]}
    assert states == {"doc_body": "FAILED", "doc_title": "ONLINE"}
    (warning,) = result.details["warnings"]
    assert "doc_body" in warning and "FAILED in the source" in warning and "too large" in warning
    # When it is restored
    restored = nb.restore_backup(dst, chunked(data), manifest_of(result))
    # Then the restore succeeds, re-created the index, and warns that it failed again, as in the source
    assert restored.counts == result.counts
    assert {r["name"]: r["state"] for r in run(dst_driver, "SHOW INDEXES YIELD name, state, type "
                                                         "WHERE type <> 'LOOKUP' RETURN name, state")} == states
    (warning,) = restored.details["warnings"]
    assert "doc_body" in warning and "FAILED again" in warning
    assert restored.details["index_states"] == states
    # and validation compares index states with the source's: FAILED in both is a warning ...
    errors, warnings = nb.ENGINE.compare_indexes(dst, manifest_of(result))
    assert errors == [] and len(warnings) == 1 and "doc_body" in warnings[0]
    # ... an index ONLINE in the source and missing here an error
    run(dst_driver, "DROP INDEX doc_title")
    errors, _ = nb.ENGINE.compare_indexes(dst, manifest_of(result))
    assert errors == ["index doc_title: ONLINE in the source, missing here"]
