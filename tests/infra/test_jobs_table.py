"""The job table (infra/jobs.py) is consistent with what it names: a handler per row, grants that
exist, per-target schedules the targets' configuration has, and the VPC placement the library
documents. Read only: no synth."""

from __future__ import annotations

from infra.jobs import GRANTS, JOBS, Trigger
from warden.config.network import DB_FUNCTIONS
from warden.config.target import Schedules


def test_every_row_names_its_own_handler_once() -> None:
    names = [job.name for job in JOBS]
    assert len(names) == len(set(names))
    for job in JOBS:
        assert (job.handler_dir / "handler.py").is_file(), job.name


def test_every_grant_a_row_names_exists() -> None:
    assert {(job.name, g) for job in JOBS for g in job.grants if g not in GRANTS} == set()


def test_per_target_scheduled_jobs_are_the_fields_of_a_targets_schedules() -> None:
    scheduled = {job.name for job in JOBS if Trigger.PER_TARGET_SCHEDULE in job.triggers}
    assert scheduled == set(Schedules.model_fields)


def test_the_functions_in_the_vpc_are_those_that_open_database_connections() -> None:
    assert {job.name for job in JOBS if job.vpc} == set(DB_FUNCTIONS)


def test_every_row_says_what_starts_it() -> None:
    assert [job.name for job in JOBS if not job.triggers] == []
