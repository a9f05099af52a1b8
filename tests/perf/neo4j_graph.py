"""The benchmarks' Neo4j graph written straight as a Warden archive (`warden-neo4j/1`), to be loaded
with Warden's restore: Cypher's own CREATE of the same graph takes over ten minutes at 1 M nodes on
this machine, the archive and its restore a minute or two.

The graph is the export benchmark's (tests/perf/test_neo4j_backup_perf.py `grow`), entity for
entity: `nodes` :Entity nodes with uid, name, score and active, 1 in 10 also :Company, 1 in 4 with
a date `born`; two relationships each, KNOWS {since} to `(i * 7919 + 1) % nodes` and WORKS_WITH to
`(i * 104729 + 7) % nodes`; the RANGE index entity_uid.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from warden.engines.neo4j import format as fmt

BATCH = 10_000  # rows per group record, as the export writes them
KEYS = ["uid", "name", "score", "active"]
INDEX = {"name": "entity_uid", "type": "RANGE", "state": "ONLINE", "entityType": "NODE",
         "labelsOrTypes": ["Entity"], "properties": ["uid"],
         "createStatement": "CREATE RANGE INDEX `entity_uid` FOR (n:`Entity`) ON (n.`uid`)"}
MANIFEST = {"format_version": fmt.FORMAT_VERSION}  # no counts: the restore checks the archive's own


def write_archive(path: Path, nodes: int) -> int:
    """The graph of `nodes` nodes and 2x as many relationships as a Warden archive; its entities."""
    from neo4j.time import Date

    # born of entity i: date(1950 + i % 50, 1 + i % 12, 1 + i % 28), as `grow` makes it (16 800 repeats them)
    born = [fmt.encode_value(Date(1950 + i % 50, 1 + i % 12, 1 + i % 28)) for i in range(50 * 12 * 28)]
    with open(path, "wb") as out:
        writer = fmt.ArchiveWriter(out)
        writer.record(["header", {"format": fmt.FORMAT_VERSION, "schema": {"constraints": [], "indexes": [INDEX]}}])
        for first in range(0, nodes, BATCH):
            groups: dict[tuple[bool, bool], list[list[Any]]] = {}
            for i in range(first, min(nodes, first + BATCH)):
                row = [i, i, f"entity-{i}", i * 0.25, i % 2 == 0]
                if i % 4 == 0:
                    row.append(born[i % len(born)])
                groups.setdefault((i % 10 == 0, i % 4 == 0), []).append(row)
            for (company, dated), rows in sorted(groups.items()):
                writer.record(["N", ["Company", "Entity"] if company else ["Entity"],
                               [*KEYS, "born"] if dated else KEYS, rows])
        for first in range(0, nodes, BATCH):
            ids = range(first, min(nodes, first + BATCH))
            writer.record(["R", "KNOWS", ["since"], [[i, (i * 7919 + 1) % nodes, 1990 + i % 30] for i in ids]])
            writer.record(["R", "WORKS_WITH", [], [[i, (i * 104729 + 7) % nodes] for i in ids]])
        writer.record(["end", {}])
        writer.close()
    return 3 * nodes


def chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk
