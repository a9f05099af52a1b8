"""Sample events in events/ parse as their function's input, except the deliberately bad ones.
(Alarm events for remediation are checked in test_remediation_events.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from warden.events import (
    BackupRequest,
    FleetStep,
    HealthRequest,
    LicenseRequest,
    PruneRequest,
    RecoveryInput,
    VerifyRequest,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"
MODELS: dict[str, type[BaseModel]] = {"backup": BackupRequest, "verify": VerifyRequest, "prune": PruneRequest,
                                      "health": HealthRequest, "recovery": RecoveryInput, "license": LicenseRequest,
                                      "fleet": FleetStep}


@pytest.mark.parametrize("path", sorted(p for p in EVENTS.glob("*.json") if p.stem.split("_")[0] in MODELS),
                         ids=lambda p: p.stem)
def test_sample_event_matches_its_model(path: Path) -> None:
    model = MODELS[path.stem.split("_")[0]]
    event = json.loads(path.read_text())
    if "bad_input" in path.stem:
        with pytest.raises(ValidationError):
            model.model_validate(event)
    else:
        model.model_validate(event)


def test_a_health_request_names_targets_each_once_or_none_for_every_target() -> None:
    assert HealthRequest.model_validate({"targets": ["b", "a", "b"]}).names == ["b", "a"]
    assert HealthRequest.model_validate({"target": "a"}).names == ["a"]
    assert HealthRequest.model_validate({}).names is None


@pytest.mark.parametrize("event", [{"targets": []}, {"target": "a", "targets": ["b"]}, {"targets": ["../etc"]},
                                   {"targets": "pg-local"}])
def test_a_health_request_refuses_an_empty_or_double_or_malformed_selection(event: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        HealthRequest.model_validate(event)
