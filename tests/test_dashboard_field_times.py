"""Experiment, generation and run fields keep the value written last by the client's clock,
whatever order the writes arrive in (a late mirror, a slow arm, a resumed sweep), on SQLite and
PostgreSQL: a late update from an older writer does not overwrite a newer value; a write with no
time counts as oldest."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi", reason="the dashboard extra: pip install 'evsys[dashboard]'")
from dashboard_server import DashboardService, ProjectClient  # noqa: E402

FIELDS = ("status", "error")


@pytest.fixture
def api(dashboard: DashboardService) -> Any:
    client = ProjectClient(dashboard, dashboard.new_project())
    yield client
    client.http.close()


def _write(op: str, data: dict[str, Any], time: float | None, **envelope: Any) -> dict[str, Any]:
    made = {"id": uuid.uuid4().hex, "op": op, "data": data, **envelope}
    return made if time is None else {**made, "time": time}


@st.composite
def updates(draw: st.DrawFn) -> tuple[list[tuple[str, str, float | None]], list[int]]:
    """Updates ``(field, value, time or None)`` (distinct times) and an order of arrival."""
    count = draw(st.integers(min_value=1, max_value=8))
    times = draw(st.lists(st.integers(1, 10**6), min_size=count, max_size=count, unique=True))
    writes = [
        (
            draw(st.sampled_from(FIELDS)),
            f"v{i}",
            None if draw(st.booleans()) and draw(st.booleans()) else 1_700_000_000.0 + t,
        )
        for i, t in enumerate(times)
    ]
    return writes, draw(st.permutations(range(count)))


def expected(arrivals: list[tuple[str, str, float | None]]) -> dict[str, Any]:
    """Per field: the value of the latest time; with no time at all, the last to arrive."""
    out: dict[str, Any] = dict.fromkeys(FIELDS)
    for field in FIELDS:
        timed = [(t, v) for f, v, t in arrivals if f == field and t is not None]
        untimed = [v for f, v, t in arrivals if f == field and t is None]
        if timed:
            out[field] = max(timed)[1]
        elif untimed:
            out[field] = untimed[-1]
    return out


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=updates(), create_first=st.booleans())
def test_each_field_keeps_the_value_written_last(
    api: ProjectClient, case: tuple[list, list[int]], create_first: bool
) -> None:
    writes, order = case
    run = uuid.uuid4().hex
    create = _write(
        "run.create", {"id": run, "experiment_id": "e", "name": "r", "status": "created"}, None
    )
    arriving = [
        _write(
            "run.update", {"id": run, writes[i][0]: writes[i][1]}, writes[i][2], create_queued=True
        )
        for i in order
    ]
    arriving = [create, *arriving] if create_first else [*arriving, create]
    for write in arriving:  # one batch each: the order of arrival is the service's too
        api.send(write)
    stored = api.get(f"/runs/{run}")
    created = ("status", "created", None)  # what the create writes of FIELDS, with no time
    updated = [writes[i] for i in order]
    want = expected([created, *updated] if create_first else [*updated, created])
    assert {field: stored[field] for field in FIELDS} == want
    assert "field_times" not in stored


def test_a_late_update_from_an_older_writer_changes_nothing_newer(api: ProjectClient) -> None:
    api.send(_write("experiment.create", {"id": "x", "name": "sweep", "status": "running"}, 100.0))
    api.send(_write("experiment.update", {"id": "x", "status": "completed"}, 300.0))
    # an arm's mirror, synced late: written before the sweep ended, arriving after
    api.send(
        _write("experiment.update", {"id": "x", "status": "running", "conclusion": "c"}, 200.0)
    )
    stored = api.get("/experiments/x")
    assert (stored["status"], stored["conclusion"], stored["name"]) == ("completed", "c", "sweep")
