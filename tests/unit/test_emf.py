"""Metric points go out as EMF lines on stdout, unless Powertools' metrics are disabled."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from warden.emf import publish


@dataclass
class Point:
    name: str
    unit: str = "Count"
    value: float = 1.0
    dimensions: dict[str, str] = field(default_factory=lambda: {"Target": "orders-db"})


def test_each_point_is_one_emf_line_with_its_dimensions(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    assert publish([Point("Healthy"), Point("CheckDuration", "Seconds", 0.2)], "Warden") == 2
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], line["Target"]) for line in lines] == [
        ("Healthy", "orders-db"), ("CheckDuration", "orders-db")]


def test_disabled_metrics_print_nothing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given metrics switched off the Powertools way (the demo and the local server do so)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    # When points are published
    count = publish([Point("Healthy"), Point("HealthStatus")], "Warden")
    # Then no EMF line reaches stdout
    assert (count, capsys.readouterr().out) == (0, "")
