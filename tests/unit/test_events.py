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
