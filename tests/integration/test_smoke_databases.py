"""Smoke: the local runtime's databases are real servers that store and return data."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from local.postgres import PostgresEndpoint

pytestmark = pytest.mark.integration


def test_postgres18_writes_and_reads_with_its_extensions(postgres: PostgresEndpoint) -> None:
    with psycopg.connect(postgres.uri(), autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        print(f"PostgreSQL {version} at {postgres.host}:{postgres.port}")
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TABLE smoke (id int PRIMARY KEY, note text, v vector(3))")
        conn.execute("INSERT INTO smoke VALUES (1, 'żółw 🐢', '[1,2,3]')")
        row = conn.execute("SELECT note, v::text FROM smoke WHERE id = 1").fetchone()
        preloaded = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        statements = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()[0]
        conn.execute("DROP TABLE smoke")
    assert version.startswith("18.")
    assert row == ("żółw 🐢", "[1,2,3]")
    assert "pg_stat_statements" in preloaded
    assert statements > 0


def test_postgres_requires_the_password(postgres: PostgresEndpoint) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=postgres.host, port=postgres.port, user="postgres", password="wrong",
                        dbname="postgres", sslmode="disable")


def test_postgres15_is_exposed_where_debian_installs_it(postgres15: PostgresEndpoint) -> None:
    with psycopg.connect(postgres15.uri(), autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        conn.execute("CREATE TABLE smoke15 AS SELECT g AS id FROM generate_series(1, 10) g")
        total = conn.execute("SELECT sum(id) FROM smoke15").fetchone()[0]
        conn.execute("DROP TABLE smoke15")
    print(f"PostgreSQL {version} at {postgres15.host}:{postgres15.port}")
    assert version.startswith("15.")
    assert total == 55


def test_neo4j_writes_and_reads(neo4j_driver: Any, neo4j_server: Any) -> None:
    records, _, _ = neo4j_driver.execute_query(
        "CALL dbms.components() YIELD versions, edition RETURN versions[0] AS v, edition")
    print(f"Neo4j {records[0]['v']} {records[0]['edition']} at {neo4j_server.uri}")
    neo4j_driver.execute_query(
        "CREATE (:Smoke {name: $name})-[:SEES {since: date('2026-11-23')}]->(:Smoke {name: 'b'})", name="ä 🐢")
    rows, _, _ = neo4j_driver.execute_query(
        "MATCH (a:Smoke)-[r:SEES]->(b:Smoke) RETURN a.name AS a, r.since.year AS y, b.name AS b")
    neo4j_driver.execute_query("MATCH (n:Smoke) DETACH DELETE n")
    assert records[0]["v"].startswith("5.26")
    assert records[0]["edition"] == "community"
    assert [(r["a"], r["y"], r["b"]) for r in rows] == [("ä 🐢", 2026, "b")]
