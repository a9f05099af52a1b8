"""The restore's fast value path (format.decode_row_bolt): an archived value becomes, byte for byte,
the PackStream the driver would send for `decode_value`'s driver object over Bolt 5; damaged tagged
values are refused as ArchiveError. No server: the driver's own dehydration is the reference."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pytest
import pytz
from neo4j._codec.hydration.bolt.v2 import HydrationHandler
from neo4j._codec.packstream.v1 import Packer
from neo4j.spatial import CartesianPoint, Point, WGS84Point
from neo4j.time import Date, DateTime, Duration, Time

from warden.engines.neo4j import format as fmt

WARSAW = pytz.timezone("Europe/Warsaw")
NEW_YORK = pytz.timezone("America/New_York")


def _point(srid: int, *coords: float) -> Point:
    point = Point(coords)
    point.srid = srid
    return point


VALUES: dict[str, Any] = {
    "date": Date(2024, 2, 29), "date_min": Date(1, 1, 1), "date_max": Date(9999, 12, 31),
    "date_epoch": Date(1970, 1, 1), "date_before_epoch": Date(1969, 12, 31),
    "localtime": Time(23, 59, 59, 999999999), "localtime_zero": Time(0, 0, 0, 0),
    "time_offset": Time(12, 34, 56, 123456789, tzinfo=pytz.FixedOffset(-330)),
    "time_utc": Time(0, 0, 0, 1, tzinfo=pytz.utc),
    "localdatetime": DateTime(1969, 12, 31, 23, 59, 59, 999999999),
    "localdatetime_2038": DateTime(2038, 1, 19, 3, 14, 8, 1),
    "datetime_z": DateTime(2024, 1, 1, 0, 0, 0, 1, tzinfo=pytz.utc),
    "datetime_offset": DateTime(2024, 3, 31, 1, 59, 59, 999999999, tzinfo=pytz.FixedOffset(-330)),
    "datetime_zone_fold": WARSAW.localize(DateTime(2024, 10, 27, 2, 30, 0, 1), is_dst=False),
    "datetime_zone_summer": WARSAW.localize(DateTime(2024, 7, 1, 12, 0, 0, 500000000)),
    "datetime_zone_old": NEW_YORK.localize(DateTime(1901, 12, 13, 20, 45, 52, 123456789)),
    "duration": Duration(months=-7, days=40, seconds=-1, nanoseconds=3),
    "duration_big": Duration(years=1000, months=11, days=30, hours=23, minutes=59, seconds=59, nanoseconds=999999999),
    "cartesian": CartesianPoint((1.5, -2.25)), "cartesian_3d": CartesianPoint((1.0, 2.0, -3.0)),
    "wgs84": WGS84Point((21.01, 52.23)), "wgs84_3d": WGS84Point((21.01, 52.23, 110.5)),
    "point_nan": CartesianPoint((math.nan, math.inf)), "point_other_srid": _point(9157, 1.0, 2.0, 3.0),
    "float_nan": math.nan, "float_inf": math.inf, "float_ninf": -math.inf, "float_negzero": -0.0,
    "bytes": bytes(range(256)), "bytes_empty": b"",
    "l_date": [Date(1, 1, 1), Date(9999, 12, 31)], "l_float": [math.nan, -0.0, math.inf, 1.5],
    "l_time": [Time(1, 0, 0, tzinfo=pytz.FixedOffset(60)), Time(23, 59, 59, 999999999, tzinfo=pytz.FixedOffset(-720))],
    "l_datetime": [WARSAW.localize(DateTime(2024, 10, 27, 2, 30)), DateTime(2024, 1, 1, tzinfo=pytz.FixedOffset(345))],
    "l_duration": [Duration(days=1), Duration(nanoseconds=1)],
    "l_point": [WGS84Point((1.0, 2.0)), WGS84Point((3.0, 4.0))],
    "plain": "text", "int": -(2**63), "l_int": [1, 2], "none": None,
}


def packed(value: Any, hooks: Any = None) -> bytes:
    stream = io.BytesIO()
    Packer(stream).pack(value, dehydration_hooks=hooks)
    return stream.getvalue()


def archived(value: Any) -> Any:
    """The value as the archive holds it: encoded, then through JSON and back."""
    return json.loads(json.dumps(fmt.encode_value(value), allow_nan=False))


@pytest.mark.parametrize("name", VALUES)
def test_bolt_decoding_sends_the_bytes_the_driver_sends_for_the_decoded_value(name: str) -> None:
    # Given: an archived value, and the Bolt 5 dehydration the driver applies to what decode_value gives
    value = archived(VALUES[name])
    hooks = HydrationHandler().new_hydration_scope().dehydration_hooks
    # When
    fast = fmt.decode_row_bolt([0, value], 1)[1]
    # Then: the same PackStream bytes, without the driver object between
    assert packed(fast) == packed(fmt.decode_value(value), hooks)


@pytest.mark.parametrize("tagged", [
    {"D": "2024-01-01"}, {"D": [1]}, {"d": [1]}, {"I": [1, 2, "3"]}, {"E": [1, 2, 3]}, {"E": [1, 2, 3, 4.5]},
    {"i": [1, 2, 3]}, {"i": [1, 2]}, {"X": [7203, 1.0]}, {"Y": ["srid", 1.0, 2.0, 3.0]}, {"X": [7203, "a", 2.0]},
    {"L": [{"D": "x"}]}, {"F": "nan"}, {"B": "not base64!"}, {"Q": 1}, {"D": 1, "t": 2},
])
def test_bolt_decoding_refuses_a_damaged_tagged_value(tagged: dict[str, Any]) -> None:
    with pytest.raises(fmt.ArchiveError, match="tag"):
        fmt.decode_row_bolt([0, 0, tagged], 2)
