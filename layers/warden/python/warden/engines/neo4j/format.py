"""Warden's Neo4j archive format (`warden-neo4j/1`): values, records, compression. No network.

An archive is one gzip stream of newline-delimited JSON (RFC 8259: no NaN literals, ASCII only).
Every line is a JSON array whose first element says what it is:

    ["header", {"format": "warden-neo4j/1", "schema": {...}, ...}]      first line, always
    ["N", labels, keys, rows]      a group of nodes: same labels, same property keys (row: [id, *values])
    ["R", type, keys, rows]        a group of relationships (row: [start id, end id, *values])
    ["end", {"counts": {...}, ...}]                                      last line, always

Every "N" comes before every "R". Property values are JSON scalars and arrays where JSON is exact
(strings, integers, finite floats, booleans, lists of those); everything else is a one-key object
tagged with the Bolt structure it mirrors (a Neo4j property is never a map, so an object is always a
tag). docs/neo4j-backup-format.md is the full description.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import pytz
from neo4j.spatial import CartesianPoint, Point, WGS84Point
from neo4j.time import Date, DateTime, Duration, Time

from warden.errors import WardenError

try:  # what the driver's dehydration makes (decode_row_bolt); private, so checked by its unit test
    from neo4j._codec.packstream import Structure
except ImportError:  # another driver: the restore sends driver values (decode_row) instead
    Structure = None
BOLT_STRUCTURES = Structure is not None  # decode_row_bolt can be used


FORMAT_VERSION = "warden-neo4j/1"
KNOWN_FORMATS = frozenset({FORMAT_VERSION})
GZIP_MAGIC = b"\x1f\x8b"
COMPRESSION_LEVEL = 1  # zlib level 1: ~4x smaller than the JSON at a fraction of the export's CPU

_EPOCH_ORDINAL = Date(1970, 1, 1).to_ordinal()
_NANOS_PER_SECOND = 1_000_000_000
_SECONDS_PER_DAY = 86_400
# A tag's key → SRID table of the driver's point classes (the driver's own table is private).
_POINT_CLASSES: dict[int | None, tuple[type[Point], int]] = {
    CartesianPoint((0.0, 0.0)).srid: (CartesianPoint, 2),
    CartesianPoint((0.0, 0.0, 0.0)).srid: (CartesianPoint, 3),
    WGS84Point((0.0, 0.0)).srid: (WGS84Point, 2),
    WGS84Point((0.0, 0.0, 0.0)).srid: (WGS84Point, 3),
}
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, check_circular=False, separators=(",", ":"))


class ArchiveError(WardenError):
    """The bytes are not a readable Warden Neo4j archive (not gzip, not JSON, truncated, misordered)."""


class UnsupportedValue(WardenError):
    """A property value of a type this format cannot represent exactly."""


# --- values -----------------------------------------------------------------------------------


def _float(value: float) -> Any:
    if value - value == 0.0:  # finite (NaN and ±Inf give NaN here)
        return value
    return {"F": "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")}


def _offset_seconds(tz: Any, value: Any) -> int:
    offset = tz.utcoffset(value)
    return int(offset.days * _SECONDS_PER_DAY + offset.seconds)


def _local_seconds(value: DateTime) -> int:
    """Seconds since 1970-01-01T00:00 of the value's wall clock (its local date and time)."""
    days = value.date().to_ordinal() - _EPOCH_ORDINAL
    return days * _SECONDS_PER_DAY + value.hour * 3600 + value.minute * 60 + value.second


def _zone_id(tz: Any) -> str | None:
    """The IANA zone id of a driver tzinfo, None for a fixed offset.

    The driver hydrates an offset of zero (`datetime()`'s default, `...Z`) and the zone id `UTC` to
    the same `pytz.utc`; Warden writes it as the offset Z, by far the more common of the two.
    """
    if tz is pytz.utc or isinstance(tz, _dt.timezone):
        return None
    zone = getattr(tz, "zone", None) or getattr(tz, "key", None)
    return zone if isinstance(zone, str) and zone else None


def encode_value(value: Any) -> Any:
    """A property value → its JSON form (exact; see the module docstring for the tags)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return _float(value)
    if kind is list or kind is tuple:
        return _encode_list(value)
    if kind is bytes or kind is bytearray:
        return {"B": base64.b64encode(value).decode("ascii")}
    if isinstance(value, DateTime):
        tz = value.tzinfo
        if tz is None:
            return {"d": [_local_seconds(value), value.nanosecond]}
        offset = _offset_seconds(tz, value)
        utc = _local_seconds(value) - offset
        zone = _zone_id(tz)
        if zone is None:
            return {"I": [utc, value.nanosecond, offset]}
        return {"i": [utc, value.nanosecond, zone]}
    if isinstance(value, Date):
        return {"D": value.to_ordinal() - _EPOCH_ORDINAL}
    if isinstance(value, Time):
        if value.tzinfo is None:
            return {"t": value.ticks}
        return {"T": [value.ticks, _offset_seconds(value.tzinfo, value)]}
    if isinstance(value, Duration):
        return {"E": [value.months, value.days, value.seconds, value.nanoseconds]}
    if isinstance(value, Point):
        srid = getattr(value, "srid", None)
        if not isinstance(srid, int) or len(value) not in (2, 3):
            raise UnsupportedValue(f"a point without an SRID or with {len(value)} coordinates")
        return {"X" if len(value) == 2 else "Y": [srid, *(_float(float(c)) for c in value)]}
    raise UnsupportedValue(f"property values of type {kind.__module__}.{kind.__qualname__} are not supported")


def _encode_list(items: list[Any] | tuple[Any, ...]) -> Any:
    # Neo4j arrays are homogeneous: a list whose first item is a JSON-exact scalar is exact as it is
    # (floats still need the NaN / ±Inf check); any other list becomes {"L": [encoded items]}.
    if not items:
        return []
    first = type(items[0])
    if first is str or first is int or first is bool:
        return items if type(items) is list else list(items)
    if first is float and all(x - x == 0.0 for x in items):
        return items if type(items) is list else list(items)
    return {"L": [encode_value(x) for x in items]}


def encode_row(row: list[Any], start: int) -> list[Any]:
    """Encode `row[start:]` in place (rows come fresh from the driver: nobody else holds them)."""
    for i in range(start, len(row)):
        value = row[i]
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            continue
        if kind is float and value - value == 0.0:
            continue
        row[i] = encode_value(value)
    return row


def _time_zone(offset: int) -> Any:
    if offset % 60:
        raise ArchiveError(f"a Time offset of {offset} s is not whole minutes")
    return pytz.FixedOffset(offset // 60)


def _clock(seconds: int, nanoseconds: int, tzinfo: Any = None) -> DateTime:
    days, rest = divmod(seconds, _SECONDS_PER_DAY)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    date = Date.from_ordinal(_EPOCH_ORDINAL + days)
    return DateTime(date.year, date.month, date.day, hours, minutes, secs, nanoseconds, tzinfo=tzinfo)


def _decode_tagged(tagged: dict[str, Any]) -> Any:
    if len(tagged) != 1:
        raise ArchiveError(f"a tagged value has {len(tagged)} keys")
    ((tag, body),) = tagged.items()
    if tag == "F":
        return _NON_FINITE[body]
    if tag == "L":
        return [_decode_tagged(x) if type(x) is dict else x for x in body]
    if tag == "B":
        return base64.b64decode(body)
    if tag == "D":
        return Date.from_ordinal(_EPOCH_ORDINAL + body)
    if tag == "t":
        return Time.from_ticks(body)
    if tag == "T":
        return Time.from_ticks(body[0], tz=_time_zone(body[1]))
    if tag == "d":
        return _clock(body[0], body[1])
    if tag == "I":
        seconds, nanos, offset = body
        # A datetime.timezone: the driver sends it as an offset (pytz.utc would go as zone "UTC").
        return _clock(seconds + offset, nanos, _dt.timezone(_dt.timedelta(seconds=offset)))
    if tag == "i":
        seconds, nanos, zone = body
        # As the driver hydrates it: the UTC instant, then the named zone (keeps DST folds exact).
        return _clock(seconds, nanos, pytz.utc).as_timezone(pytz.timezone(zone))
    if tag == "E":
        return Duration(months=body[0], days=body[1], seconds=body[2], nanoseconds=body[3])
    if tag in ("X", "Y"):
        srid, *coords = (_decode_tagged(c) if type(c) is dict else c for c in body)
        known = _POINT_CLASSES.get(srid)
        if known is not None and known[1] == len(coords):
            return known[0](coords)
        point = Point(coords)
        point.srid = srid
        return point
    raise ArchiveError(f"unknown value tag {tag!r}")


def decode_value(value: Any) -> Any:
    """The JSON form → the driver value `encode_value` was given (the same Neo4j type and value)."""
    if type(value) is dict:
        try:
            return _decode_tagged(value)
        except (KeyError, ValueError, TypeError, IndexError, pytz.UnknownTimeZoneError) as err:
            raise ArchiveError(f"a tagged value cannot be read: {value!r:.200} ({err})") from None
    return value


def decode_row(row: list[Any], start: int) -> list[Any]:
    """Decode `row[start:]` in place."""
    for i in range(start, len(row)):
        if type(row[i]) is dict:
            row[i] = decode_value(row[i])
    return row


# Tags whose body is, as it is, the fields of the Bolt 5 structure of the same tag: one integer, or a
# list of this many integers (`i` and the points are checked on their own).
_BOLT_INTEGER = frozenset({"D", "t"})
_BOLT_INTEGERS = {"T": 2, "d": 2, "I": 3, "E": 4}


def _bolt_tagged(tagged: dict[str, Any]) -> Any:
    if len(tagged) != 1:
        raise ArchiveError(f"a tagged value has {len(tagged)} keys")
    ((tag, body),) = tagged.items()
    if tag in _BOLT_INTEGER:
        if type(body) is not int:
            raise ValueError(f"{tag} holds {type(body).__name__}, not an integer")
        return Structure(tag.encode(), body)
    arity = _BOLT_INTEGERS.get(tag)
    if arity is not None:
        if type(body) is not list or len(body) != arity or any(type(x) is not int for x in body):
            raise ValueError(f"{tag} does not hold {arity} integers")
        return Structure(tag.encode(), *body)
    if tag == "i":
        seconds, nanoseconds, zone = body
        if type(seconds) is not int or type(nanoseconds) is not int or type(zone) is not str:
            raise ValueError("i does not hold seconds, nanoseconds and a zone id")
        return Structure(b"i", seconds, nanoseconds, zone)
    if tag in ("X", "Y"):
        srid, *coords = body
        if type(srid) is not int or len(coords) != (2 if tag == "X" else 3):
            raise ValueError(f"{tag} does not hold an SRID and {2 if tag == 'X' else 3} coordinates")
        return Structure(tag.encode(), srid, *(float(_decode_tagged(c) if type(c) is dict else c) for c in coords))
    if tag == "L":
        return [_bolt_tagged(x) if type(x) is dict else x for x in body]
    return _decode_tagged(tagged)  # F, B: a float, bytes


def decode_row_bolt(row: list[Any], start: int) -> list[Any]:
    """Decode `row[start:]` in place into what the driver sends as it is, over Bolt 5 or later: a
    tagged value becomes the PackStream structure its tag names (the tags are Bolt's), the very one
    the driver's dehydration makes of `decode_value`'s result, without the driver objects between
    (a `DateTime` costs ~20 µs to build and ~10 µs to dehydrate; the restore sends millions)."""
    for i in range(start, len(row)):
        value = row[i]
        if type(value) is dict:
            try:
                row[i] = _bolt_tagged(value)
            except (KeyError, ValueError, TypeError, IndexError) as err:
                raise ArchiveError(f"a tagged value cannot be read: {value!r:.200} ({err})") from None
    return row


# --- records ----------------------------------------------------------------------------------


class ArchiveWriter:
    """Records in, gzip bytes out to `out.write`, about `flush_bytes` of JSON at a time."""

    def __init__(self, out: Any, *, level: int = COMPRESSION_LEVEL, flush_bytes: int = 1 << 20) -> None:
        self._out = out
        self._zip = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 16+15: a gzip container
        self._lines: list[str] = []
        self._pending = 0
        self._flush_bytes = flush_bytes
        self.json_bytes = 0
        self.compressed_bytes = 0

    def record(self, record: list[Any]) -> None:
        line = _ENCODER.encode(record)
        self._lines.append(line)
        self._pending += len(line) + 1
        if self._pending >= self._flush_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._lines:
            return
        self._lines.append("")
        data = "\n".join(self._lines).encode("ascii")
        self._lines.clear()
        self._pending = 0
        self.json_bytes += len(data)
        self._write(self._zip.compress(data))

    def _write(self, data: bytes) -> None:
        if data:
            self.compressed_bytes += len(data)
            self._out.write(data)

    def close(self) -> None:
        self._flush()
        self._write(self._zip.flush())


def iter_records(chunks: Iterable[bytes]) -> Iterator[list[Any]]:
    """The archive's records, one parsed line at a time, from its (gzip) bytes in any chunking.

    Raises ArchiveError when the bytes are not gzip, a line is not JSON, or the stream is truncated.
    """
    unzip = zlib.decompressobj(31)
    partial: list[bytes] = []  # a line split across chunks, in pieces (no quadratic re-joining)
    first = True
    for chunk in chunks:
        if not chunk:
            continue
        if first and not chunk.startswith(GZIP_MAGIC[: len(chunk)]):
            raise ArchiveError("not a gzip stream (a Warden Neo4j archive is gzip-compressed JSON lines)")
        first = False
        try:
            data = unzip.decompress(chunk)
        except zlib.error as err:
            raise ArchiveError(f"the archive's gzip stream is damaged: {err}") from None
        if unzip.unused_data:
            raise ArchiveError("bytes after the end of the archive's gzip stream")
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            if partial:
                partial.append(data[start:newline])
                line = b"".join(partial)
                partial.clear()
            else:
                line = data[start:newline]
            start = newline + 1
            yield _parse(line)
        if start < len(data):
            partial.append(data[start:])
    if first:
        raise ArchiveError("the archive is empty (no bytes)")
    if not unzip.eof:
        raise ArchiveError("the archive is truncated (its gzip stream does not end)")
    if partial and b"".join(partial).strip():
        raise ArchiveError("the archive ends in the middle of a line")


def _parse(line: bytes) -> list[Any]:
    try:
        record = json.loads(line)
    except ValueError as err:
        raise ArchiveError(f"an archive line is not JSON: {err}") from None
    if type(record) is not list or not record or type(record[0]) is not str:
        raise ArchiveError("an archive line is not a [kind, ...] record")
    return record
