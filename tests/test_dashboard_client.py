"""The dashboard client: the mirror first, a sender that never blocks training, and `evsys sync`.

Failure paths run against a scripted double (``tests/dashboard_double.py``) that fails on cue;
what the service stores is checked against the real service.
"""

from __future__ import annotations

import json
import logging
import pickle
import socket
import threading
import urllib.request
from pathlib import Path

import pytest

import evsys
from evsys.tracking.errors import DashboardClientError, EvsysAuthError
from evsys.tracking.mirror import find_segments, read_segment
from evsys.tracking.settings import Settings
from tests.dashboard_double import ScriptedDashboard

FAST = {"send_interval": 0.01, "retry_initial": 0.02, "retry_max": 0.1, "timeout": 5.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mirrored(log_dir: Path) -> list[dict]:
    return [w for path in find_segments(log_dir) for _, w in read_segment(path).writes]


@pytest.fixture
def double():
    with ScriptedDashboard() as server:
        yield server


@pytest.fixture
def online(double, tmp_path):
    client = evsys.DashboardClient(double.url, "good-key", log_dir=tmp_path / "m", **FAST)
    yield client
    client.close(timeout=5)


# ---- settings and start ----
def test_arguments_override_env_vars(monkeypatch, tmp_path):
    monkeypatch.setenv("EVSYS_API_URL", "http://env:1/")
    monkeypatch.setenv("EVSYS_OFFLINE", "true")
    monkeypatch.setenv("EVSYS_LOG_DIR", str(tmp_path / "env"))
    settings = Settings.resolve(log_dir=tmp_path / "arg")
    assert (settings.api_url, settings.offline, settings.log_dir) == (
        "http://env:1",
        True,
        tmp_path / "arg",
    )
    assert Settings.resolve(offline=False, api_url="http://arg:2").api_url == "http://arg:2"
    monkeypatch.setenv("EVSYS_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="EVSYS_OFFLINE='maybe'"):
        Settings.resolve()


def test_offline_needs_no_key_and_touches_no_network(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("offline client opened a connection")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("EVSYS_OFFLINE", "1")
    monkeypatch.delenv("EVSYS_API_KEY", raising=False)
    with evsys.DashboardClient(log_dir=tmp_path) as client:
        exp = client.create_experiment("e", hypothesis="h", tags=["a"])
        run = client.create_run(exp, "r", config={"lr": 0.1})
        client.log_step_metric(run, 1, {"loss": 1.0})
        assert client.flush() is True
        with pytest.raises(DashboardClientError, match="offline"):
            client.list_runs()
    ops = [w["op"] for w in mirrored(tmp_path)]
    assert ops == ["experiment.create", "run.create", "run.steps"]


def test_missing_key_is_an_auth_error_and_writes_no_mirror(monkeypatch, tmp_path):
    monkeypatch.delenv("EVSYS_API_KEY", raising=False)
    with pytest.raises(EvsysAuthError, match="EVSYS_API_KEY"):
        evsys.DashboardClient("http://127.0.0.1:9", offline=False, log_dir=tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_rejected_key_raises_at_start(double, tmp_path):
    with pytest.raises(EvsysAuthError) as caught:
        evsys.DashboardClient(double.url, "wrong-key", log_dir=tmp_path / "m", **FAST)
    assert caught.value.status == 401
    assert not (tmp_path / "m").exists()


def test_key_of_another_project_is_refused(double, tmp_path):
    with pytest.raises(EvsysAuthError, match="belongs to project 'demo'"):
        evsys.DashboardClient(double.url, "good-key", project_id="other", log_dir=tmp_path, **FAST)


def test_errors_pickle_with_their_status():
    for error in (DashboardClientError("bad", 422), EvsysAuthError("no", 401)):
        back = pickle.loads(pickle.dumps(error))
        assert (type(back), back.detail, back.status, str(back)) == (
            type(error),
            error.detail,
            error.status,
            str(error),
        )


# ---- the hot path ----
def test_a_write_is_mirrored_before_it_is_sent_and_never_on_the_callers_thread(
    double, tmp_path, monkeypatch
):
    sent_from: list[str] = []
    real_urlopen = urllib.request.urlopen

    def watched(request, *args, **kwargs):
        sent_from.append(threading.current_thread().name)
        if request.get_method() == "POST":
            body = json.loads(request.data)
            on_disk = {w["id"] for w in mirrored(tmp_path)}
            assert {w["id"] for w in body["writes"]} <= on_disk
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", watched)
    client = evsys.DashboardClient(double.url, "good-key", log_dir=tmp_path, **FAST)
    main_calls = len(sent_from)  # the key check at start is the only call on this thread
    for step in range(1, 201):
        client.log_step_metric("run-1", step, {"loss": 1 / step})
    # on disk at once, before any flush
    assert len(mirrored(tmp_path)) == 200
    assert client.close(timeout=10) is True
    assert sent_from[:main_calls] == ["MainThread"]
    assert set(sent_from[main_calls:]) == {"evsys-dashboard-sender"}
    assert sorted(s for s, _ in double.steps("run-1")) == list(range(1, 201))
    assert max(double.batches) > 1  # batched, not one request a step
    sent_ids = tmp_path / find_segments(tmp_path)[0].name.replace(".writes.jsonl", ".sent")
    assert len(sent_ids.read_text().split()) == 200


def test_bad_writes_are_refused_before_the_mirror(tmp_path):
    with evsys.DashboardClient(offline=True, log_dir=tmp_path) as client:
        with pytest.raises(DashboardClientError, match="must be a number"):
            client.log_step_metric("r", 1, {"loss": "low"})
        with pytest.raises(DashboardClientError, match="integer"):
            client.log_step_metric("r", 1.5, {"loss": 1.0})
        with pytest.raises(DashboardClientError, match="direction"):
            client.create_experiment("e", direction="up")
        with pytest.raises(DashboardClientError, match=r"unknown field\(s\) \['bset_score'\]"):
            client.update_experiment("e", bset_score=1.0)
        client.log_step_metric("r", 2, {"loss": float("nan")})  # a diverged loss is kept
    assert [w["data"]["steps"][0]["step"] for w in mirrored(tmp_path)] == [2]


# ---- failures while running ----
def test_unreachable_service_at_start_warns_mirrors_and_sends_when_it_comes_up(tmp_path, caplog):
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="evsys.tracking"):
        client = evsys.DashboardClient(
            f"http://127.0.0.1:{port}", "good-key", log_dir=tmp_path, **FAST
        )
        for step in range(1, 6):
            client.log_step_metric("run-1", step, {"loss": 0.5})
        assert client.flush(timeout=0.3) is False
    assert "does not answer" in caplog.text
    with ScriptedDashboard(port=port) as server:
        assert client.close(timeout=10) is True
        assert len(server.steps("run-1")) == 5


def test_5xx_and_cut_connections_warn_once_and_retry(online, double, caplog):
    double.fail_next = ["503", "500", "reset", "503"]
    with caplog.at_level(logging.WARNING, logger="evsys.tracking"):
        for step in range(1, 51):
            online.log_step_metric("run-1", step, {"loss": 0.1})
        assert online.flush(timeout=10) is True
    assert len(double.steps("run-1")) == 50
    unreachable = [
        r for r in caplog.records if "does not answer" in r.message or "scripted" in r.message
    ]
    assert len(unreachable) == 1
    assert "reachable again" in caplog.text


def test_a_refused_write_raises_at_flush_and_the_rest_of_its_batch_is_sent(online, double):
    double.refuse = lambda write: write["op"] == "run.update"
    run = online.create_run("exp-1", "r", id="run-1")
    for step in range(1, 11):
        online.log_step_metric(run, step, {"loss": 0.1})
    online.update_run(run, status="completed")
    with pytest.raises(DashboardClientError, match=r"run\.update.*refused on cue") as caught:
        online.flush(timeout=10)
    assert caught.value.status == 422
    assert len(double.steps("run-1")) == 10
    assert {w["op"] for w in double.writes.values()} == {"run.create", "run.steps"}


def test_a_key_revoked_mid_run_warns_and_the_run_goes_on_locally(online, double, caplog, tmp_path):
    online.log_step_metric("run-1", 1, {"loss": 1.0})
    assert online.flush(timeout=10) is True
    double.revoke()
    with caplog.at_level(logging.WARNING, logger="evsys.tracking"):
        for step in range(2, 6):
            online.log_step_metric("run-1", step, {"loss": 1.0})
        assert online.flush(timeout=10) is False
        online.log_step_metric("run-1", 6, {"loss": 1.0})  # still mirrored, no error
    assert "rejected the API key" in caplog.text
    assert len(double.steps("run-1")) == 1
    assert len(mirrored(tmp_path / "m")) == 6


# ---- ExperimentRun ----
def test_experiment_run_records_the_reference_flow(tmp_path):
    client = evsys.DashboardClient(offline=True, log_dir=tmp_path)
    with evsys.ExperimentRun(
        client, experiment_name="sft_run_v9", recipe_kind="sft", run_config={"lr": 1e-5}
    ) as run:
        for step in range(1, 4):
            run.log_step(step, loss=1 / step)
        eval_id = run.log_eval(metrics={"pass_at_1": 0.83}, benchmark_id="b1")
        run.log_predictions(
            [{"prompt": "p", "completion": "c", "passed": True}], eval_run_id=eval_id
        )
        with run.benchmark(name="gsm8k") as scores:
            scores["accuracy"] = 0.5
        run.set_best_score(0.83)
        run.set_conclusion("rank-8 LoRA wins")
    client.close()
    writes = mirrored(tmp_path)
    ops = [w["op"] for w in writes]
    assert ops[:2] == ["experiment.create", "run.create"]
    assert ops.count("run.steps") == 3
    assert {"eval_run.create", "predictions.add", "benchmark.record"} <= set(ops)
    ending = [w["data"] for w in writes if w["op"] in ("run.update", "experiment.update")]
    assert {"id": run.experiment_id, "best_score": 0.83, "best_run_id": run.run_id} in ending
    assert {"id": run.experiment_id, "conclusion": "rank-8 LoRA wins"} in ending
    assert {"id": run.experiment_id, "status": "completed"} in ending
    final = next(d for d in ending if d["id"] == run.run_id)
    assert final["status"] == "completed"
    assert final["summary"] == {"loss": 1 / 3, "pass_at_1": 0.83, "accuracy": 0.5}


def test_experiment_run_marks_a_failed_block_failed(tmp_path):
    client = evsys.DashboardClient(offline=True, log_dir=tmp_path)
    with pytest.raises(RuntimeError), evsys.ExperimentRun(client, experiment_name="e") as run:
        run.log_step(1, loss=1.0)
        raise RuntimeError("out of memory")
    client.close()
    ending = [w["data"] for w in mirrored(tmp_path) if w["op"] == "run.update"]
    assert ending == [
        {
            "id": run.run_id,
            "status": "failed",
            "error": "RuntimeError: out of memory",
            "summary": {"loss": 1.0},
        }
    ]
