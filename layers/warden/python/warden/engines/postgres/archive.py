"""pg_dump custom-format archives: the header (format version, compression) and the table of contents
`pg_restore --list` shows, checked before a restore touches anything.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from warden.engines.base import RestoreRefused
from warden.engines.postgres.tools import PgTool, _tail, _tool_env

ARCHIVE_MAGIC = b"PGDMP"


_COMPRESSION_CODES = {0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}


@dataclass(frozen=True)
class ArchiveHeader:
    version: tuple[int, int, int]
    format: str
    compression: str

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


def parse_header(head: bytes) -> ArchiveHeader:
    """The custom-format archive header: `PGDMP`, version major/minor/rev, int and offset sizes,
    format, and (archive 1.15+) the compression method."""
    if len(head) < 11 or not head.startswith(ARCHIVE_MAGIC):
        raise ValueError("not a pg_dump custom-format archive (no PGDMP header)")
    vmaj, vmin, vrev, _int_size, _off_size, fmt = head[5:11]
    formats = {1: "custom", 3: "tar", 5: "directory"}
    compression = "unknown"
    if (vmaj, vmin) >= (1, 15) and len(head) >= 12:
        compression = _COMPRESSION_CODES.get(head[11], "unknown")
    return ArchiveHeader(version=(vmaj, vmin, vrev), format=formats.get(fmt, str(fmt)), compression=compression)


@dataclass(frozen=True)
class _Toc:
    entries: int
    owners: frozenset[str]


_TOC_LINE = re.compile(r"^\d+; \d+ \d+ .* (\S+)$")


def _check_archive(tool: PgTool, archive: Path) -> _Toc:
    """`pg_restore --list`: the archive is readable by this pg_restore (version, header, TOC)."""
    result = subprocess.run([str(tool.path), "--list", str(archive)], capture_output=True, timeout=600,
                            check=False, env=_tool_env(None, None))
    if result.returncode != 0:
        raise RestoreRefused(
            f"pg_restore {tool.version} cannot read this backup: {_tail(result.stderr.decode(errors='replace'))}")
    owners: set[str] = set()
    entries = 0
    for line in result.stdout.decode(errors="replace").splitlines():
        if line.startswith(";") or not line.strip():
            continue
        entries += 1
        match = _TOC_LINE.match(line)
        if match and match.group(1) != "-":
            owners.add(match.group(1))
    return _Toc(entries=entries, owners=frozenset(owners))
