"""The record the client and the service keep together: the value written last stays whatever
arrives last, NaN and infinities stay apart end to end, an update needs its object, and a dead
service costs an arm's end about a second (its mirror keeps everything for `evsys sync`).

Against the real service (uvicorn in this process, SQLite and PostgreSQL) for what is stored;
against a port nothing listens on, a socket that never answers and the scripted double for a
service that is down or hangs.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_server import DATABASES, running_dashboard

import evsys
from evsys.tracking.errors import DashboardClientError
from evsys.tracking.mirror import find_segments, read_segment
from tests.dashboard_double import ScriptedDashboard

FAST = {"send_interval": 0.01, "retry_initial": 0.02, "retry_max": 0.1, "timeout": 5.0}


@pytest.fixture(scope="module", params=DATABASES)
def service(request, tmp_path_factory):
    pytest.importorskip("fastapi", reason="the dashboard extra: pip install 'evsys[dashboard]'")
    with running_dashboard(request.param, tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@pytest.fixture(scope="module")
def service_key(service) -> str:
    return service.new_project().key


def mirror_lines(log_dir: Path) -> list[str]:
    return [line for path in find_segments(log_dir) for line in path.read_text().splitlines()]


def strict_json(line: str) -> dict:
    """A line as JSON proper: NaN and Infinity tokens are not JSON."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} is not JSON: {line}")

    return json.loads(line, parse_constant=refuse)


# ---- the value written last stays ------------------------------------------------------------


def test_an_old_mirror_synced_after_newer_online_writes_changes_nothing(
    service, service_key, tmp_path, monkeypatch, capsys
):
    """A machine offline writes every step first and syncs last: the newer online values stay
    (50 of 50 overlapping steps were overwritten before)."""
    from evsys.cli import main

    ids = {"experiment_id": f"exp-{tmp_path.name}", "run_id": f"run-{tmp_path.name}"}
    with (
        evsys.DashboardClient(offline=True, log_dir=tmp_path / "offline") as offline,
        evsys.ExperimentRun(offline, experiment_name="arm", **ids) as run,
    ):
        for step in range(1, 51):
            run.log_step(step, loss=-1.0)
    with (
        evsys.DashboardClient(service.url, service_key, log_dir=tmp_path / "online") as online,
        evsys.ExperimentRun(online, experiment_name="arm", **ids) as run,
    ):
        online.create_experiment("arm", id=ids["experiment_id"])
        for step in range(1, 51):
            run.log_step(step, loss=1.0 / step)
    with evsys.DashboardClient(service.url, service_key, log_dir=tmp_path / "r") as reader:
        before = reader.get_run_steps(ids["run_id"])
        assert [s["value"] for s in before] == [1.0 / step for step in range(1, 51)]
        monkeypatch.setenv("EVSYS_API_URL", service.url)
        monkeypatch.setenv("EVSYS_API_KEY", service_key)
        with pytest.raises(SystemExit) as exit_:
            main(["sync", str(tmp_path / "offline")])
        assert exit_.value.code == 0, capsys.readouterr().err
        assert reader.get_run_steps(ids["run_id"]) == before


# ---- NaN, +Inf and -Inf ----------------------------------------------------------------------


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_nan_and_infinities_stay_apart_from_client_to_service_and_back(
    service, service_key, tmp_path
):
    import httpx
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from evsys.tracking.wire import wire_number

    log_dir = tmp_path / "m"
    client = evsys.DashboardClient(service.url, service_key, log_dir=log_dir, **FAST)
    run_id = client.create_run("exp", "nan", id=f"nan-{tmp_path.name}")
    steps = iter(range(1, 10**6))

    def round_trip(metrics: dict[str, float]) -> None:
        step = next(steps)
        client.log_step_metric(run_id, step, metrics)
        client.update_run(run_id, summary=metrics)
        assert client.flush(timeout=30) is True
        held = {s["name"]: s["value"] for s in client.get_run_steps(run_id) if s["step"] == step}
        assert held.keys() == metrics.keys()
        assert all(same(held[name], value) for name, value in metrics.items()), held
        summary = client.get_run(run_id)["summary"]  # as the API answers: names for the three
        assert summary.keys() == metrics.keys()
        for name, value in metrics.items():
            if math.isfinite(value):  # (JSONB may give a whole float back as an integer)
                assert float(summary[name]) == value
            else:
                assert summary[name] == wire_number(value)

    specials = st.sampled_from([math.nan, math.inf, -math.inf])

    @settings(max_examples=20, deadline=None)
    @given(values=st.lists(st.one_of(specials, st.floats()), min_size=1, max_size=4))
    def any_floats(values: list[float]) -> None:
        round_trip({f"m{i}": value for i, value in enumerate(values)})

    try:
        round_trip({"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "one": 1.0})
        any_floats()
    finally:
        client.close(timeout=30)
    for line in mirror_lines(log_dir):
        strict_json(line)  # the mirror, and so what went on the wire, is JSON proper
    answer = httpx.get(
        f"{service.api}/runs/{run_id}/steps",
        params={"name": "nan"},
        headers={"Authorization": f"Bearer {service_key}"},
    )
    assert strict_json(answer.text)["steps"] == [{"step": 1, "name": "nan", "value": "NaN"}]
    held = {s["name"]: s["value"] for s in client.get_run_steps(run_id) if s["step"] == 1}
    assert [held[name] for name in ("inf", "ninf", "one")] == [math.inf, -math.inf, 1.0]


def test_nan_and_infinities_show_by_name_on_the_compare_page() -> None:
    pytest.importorskip("fastapi")
    from evsys.dashboard.ui.views import compare

    runs = [{"config": {}, "summary": {"loss": v}} for v in ("NaN", 1.0, "-Infinity")]
    assert [c["text"] for c in compare(runs).metrics[0]["cells"]] == ["NaN", "1", "-Infinity"]


def test_a_curve_names_the_steps_where_it_was_nan_or_infinite() -> None:
    pytest.importorskip("fastapi")
    from evsys.dashboard.ui.charts import line_chart

    points = [(1, 1.0), (2, math.nan), (3, math.inf), (4, 0.5)] + [
        (s, -math.inf) for s in range(5, 12)
    ]
    chart = line_chart("loss", points)
    assert (
        chart.nonfinite
        == "NaN at step 2; Infinity at step 3; -Infinity at step 5, 6, 7, 8, 9 and 2 more"
    )
    assert chart.polyline.count(",") == 2  # the two finite points are drawn
    assert line_chart("loss", [(1, 1.0)]).nonfinite == ""


# ---- an update needs its object --------------------------------------------------------------


def test_an_update_of_an_unknown_id_is_refused_and_of_a_queued_create_is_not(
    service, service_key, tmp_path
):
    with evsys.DashboardClient(service.url, service_key, log_dir=tmp_path, **FAST) as client:
        run_id = client.create_run("exp", "mine")
        client.update_run(run_id, status="completed")  # its create is this client's: fine
        assert client.flush(timeout=30) is True
        client.update_run("never-created", status="completed")
        client.update_experiment("never-created-either", status="completed")
        with pytest.raises(DashboardClientError, match="no run 'never-created'") as refused:
            client.flush(timeout=30)
        assert refused.value.status == 404 and "and 1 more" in str(refused.value)
        assert client.get_run(run_id)["status"] == "completed"
        with pytest.raises(DashboardClientError) as missing:
            client.get_run("never-created")
        assert missing.value.status == 404
    flagged = [
        strict_json(line).get("create_queued")
        for line in mirror_lines(tmp_path)
        if ".update" in line
    ]
    assert flagged == [True, None, None]


# ---- a dead service costs about a second -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A socket that takes connections (the kernel does) and never answers one."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("dead", ["nothing listens", "hangs"])
def test_a_dead_service_costs_an_arm_at_most_a_second_at_close(
    dead, hanging_url, tmp_path, monkeypatch
):
    from evsys.log_stores.dashboard import DashboardLogStore

    url = hanging_url if dead == "hangs" else f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("EVSYS_API_URL", url)
    monkeypatch.setenv("EVSYS_API_KEY", "some-key")
    store = DashboardLogStore(run_dir=tmp_path / "arm", close_timeout_s=30)
    for step in range(200):
        store.log_metrics({"loss": 1.0 / (step + 1)}, step)
    time.sleep(0.3)  # the sender is retrying (or waiting on the socket) by now
    began = time.monotonic()
    store.close()
    assert time.monotonic() - began <= 1.0
    writes = [w for p in find_segments(tmp_path / "arm") for _, w in read_segment(p).writes]
    assert len(writes) == 200  # the mirror has every write, for `evsys sync`


def test_a_service_that_hangs_mid_run_costs_the_close_one_request_timeout(tmp_path):
    """A service that answered, then hangs, looks busy until its request times out (a busy
    service must not be given up on): then the close gives up, not at its own timeout."""
    with ScriptedDashboard() as double:
        client = evsys.DashboardClient(
            double.url, "good-key", log_dir=tmp_path, **{**FAST, "timeout": 1.0}
        )
        client.log_step_metric("run-1", 1, {"loss": 1.0})
        assert client.flush(timeout=10) is True
        double.fail_next = ["hang"]
        for step in range(2, 101):
            client.log_step_metric("run-1", step, {"loss": 1.0 / step})
        began = time.monotonic()
        assert client.close(timeout=30) is False
        assert time.monotonic() - began <= 1.0 + 1.0
        double.released.set()
    assert len(mirror_lines(tmp_path)) == 100


def test_a_slow_service_that_answers_is_waited_for(tmp_path):
    """Giving up on a dead service must not give up on a live one: a service whose write
    batches take a while (once 1 s, then 1.5 s at the end) but that answers ``GET /health``
    meanwhile gets every write at close."""
    with ScriptedDashboard() as double:
        client = evsys.DashboardClient(double.url, "good-key", log_dir=tmp_path, **FAST)
        double.fail_next = ["slow:1.0"]
        client.log_step_metric("run-1", 1, {"loss": 1.0})
        assert client.flush(timeout=10) is True
        double.fail_next = ["slow:1.5"]
        for step in range(2, 201):
            client.log_step_metric("run-1", step, {"loss": 1.0 / step})
        assert client.close(timeout=30) is True
        assert len(double.steps("run-1")) == 200


# ---- the hot path's encoder ------------------------------------------------------------------


def test_the_hot_paths_line_is_the_write_the_general_path_makes():
    """``StepLines`` writes what ``make_write`` + ``encode_write`` write, or declines."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from evsys.tracking.mirror import encode_write
    from evsys.tracking.step_lines import StepLines
    from evsys.tracking.wire import MAX_INT, check_data, check_write, make_write

    lines = StepLines()
    names = st.text(min_size=0, max_size=300)
    values = st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.booleans(), st.none())

    @settings(max_examples=300, deadline=None)
    @given(
        run_id=st.one_of(st.text(max_size=40), st.integers()),
        step=st.one_of(st.integers(0, 2**40), st.floats()),
        metrics=st.dictionaries(names, values, max_size=5),
    )
    def same_write(run_id, step, metrics) -> None:
        made = lines.make(run_id, step, metrics)
        data = {"run_id": run_id, "steps": [{"step": step, "metrics": metrics}]}
        general = make_write("run.steps", data)
        plain = (
            isinstance(run_id, str)
            and check_data("run.steps", {"run_id": run_id, "steps": []}) is None
            and type(step) is int
            and metrics
            and all(0 < len(n) <= 256 for n in metrics)
            and all(type(v) in (int, float) and math.isfinite(v) for v in metrics.values())
            and all(abs(v) <= MAX_INT for v in metrics.values() if type(v) is int)
        )
        if not plain:
            assert made is None
            return
        write_id, line = made
        fast = strict_json(line)
        assert fast["id"] == write_id and len(write_id) == 32
        assert check_write(fast) is None
        assert abs(fast["time"] - general["time"]) < 5
        assert line == encode_write({**general, "id": write_id, "time": fast["time"]})

    same_write()
    ids = {lines.make("r", 1, {"x": 1.0})[0] for _ in range(1000)}
    assert len(ids) == 1000
