"""NaN and infinite scores, recorded as what they are and never silently null, on SQLite and
PostgreSQL: a prediction's score keeps its name ("NaN", "Infinity", "-Infinity") as a step
metric does; a best score must be finite (a NaN is never the best), so a non-finite one is
refused with one clear error naming the field, and a run whose success metric is NaN is not
made the experiment's best (its summary keeps the NaN)."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evsys.tracking.wire import NONFINITE, check_data, wire_number

pytest.importorskip("fastapi", reason="the dashboard extra: pip install 'evsys[dashboard]'")
from dashboard_server import DashboardService, ProjectClient, write  # noqa: E402

NUMBERS = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**6), 10**6)
SLOW = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def api(dashboard: DashboardService) -> Any:
    client = ProjectClient(dashboard, dashboard.new_project())
    yield client
    client.http.close()


@given(op=st.sampled_from(["experiment.update", "generation.update"]), score=NUMBERS)
def test_a_best_score_must_be_finite(op: str, score: float) -> None:
    for sent in (score, wire_number(float(score))):  # the float, or its name on the wire
        problem = check_data(op, {"id": "e", "best_score": sent})
        if math.isfinite(score):
            assert problem is None
        else:
            assert problem is not None and problem.startswith(
                "data.best_score: must be a finite number"
            )


def _best(api: ProjectClient, experiment: str) -> Any:
    return api.get(f"/experiments/{experiment}")["best_score"]


@SLOW
@given(score=st.sampled_from([math.nan, math.inf, -math.inf, *NONFINITE]))
def test_the_service_refuses_a_non_finite_best_and_keeps_the_one_it_had(
    api: ProjectClient, score: Any
) -> None:
    api.send(
        write("experiment.create", {"id": "e", "name": "x"}),
        write("experiment.update", {"id": "e", "best_score": 0.5, "best_run_id": "r1"}),
    )
    response = api.post_writes(
        write("experiment.update", {"id": "e", "best_score": score, "best_run_id": "r2"})
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("writes[0].data.best_score: must be a finite")
    experiment = api.get("/experiments/e")
    assert (experiment["best_score"], experiment["best_run_id"]) == (0.5, "r1")


@SLOW
@given(scores=st.lists(st.none() | st.floats(allow_nan=True, allow_infinity=True), max_size=8))
@example(scores=[math.nan, 0.5, math.inf, None, -math.inf])
def test_prediction_scores_read_back_as_they_were_written(
    api: ProjectClient, scores: list[float | None]
) -> None:
    run = uuid.uuid4().hex  # a run of its own per example
    rows = [{"prompt": f"p{i}", "completion": "c", "score": s} for i, s in enumerate(scores)]
    api.send(
        write("run.create", {"id": run, "experiment_id": "e", "name": "r"}),
        write("predictions.add", {"id": uuid.uuid4().hex, "run_id": run, "rows": rows}),
    )
    stored = api.get(f"/runs/{run}/predictions")["predictions"]
    # NaN, Infinity and -Infinity by name, never null
    assert [p["score"] for p in stored] == [None if s is None else wire_number(s) for s in scores]
    assert all("score_nonfinite" not in p for p in stored)


def test_a_run_whose_success_metric_is_nan_is_not_the_best(
    dashboard: DashboardService, tmp_path: Path
) -> None:
    from evsys.log_stores.dashboard_results import send_results
    from evsys.tracking.client import DashboardClient

    key = dashboard.new_project().key
    with DashboardClient(dashboard.url, key, log_dir=tmp_path / "log") as client:
        experiment = client.create_experiment("nan run", success_metric="eval/acc")
        run = client.create_run(experiment, "r")
        client.update_experiment(experiment, best_score=0.25, best_run_id="earlier")
        store = SimpleNamespace(
            client=client, run_id=run, experiment_id=experiment, run_dir=None, in_sweep=False
        )
        config = SimpleNamespace(
            metadata=SimpleNamespace(success_metric=SimpleNamespace(name="eval/acc"), benchmark=[])
        )
        result = SimpleNamespace(status="completed", error=None, metrics={"eval/acc": math.nan})
        send_results(store, config, result)
        assert client.flush()
        stored = client.get_experiment(experiment)
        summary = client.get_run(run)["summary"]
    assert stored["status"] == "completed"
    assert stored["best_run_id"] is None and stored["best_score"] is None  # no best, not NaN
    assert summary == {"eval/acc": "NaN"}  # what the run scored, as it is


def test_the_sdk_refuses_a_non_finite_best_at_the_call(tmp_path: Path) -> None:
    from evsys.tracking.client import DashboardClient
    from evsys.tracking.errors import DashboardClientError

    with DashboardClient(offline=True, log_dir=tmp_path) as client:
        experiment = client.create_experiment("x")
        with pytest.raises(DashboardClientError, match="best_score: must be a finite number"):
            client.update_experiment(experiment, best_score=math.nan)
