"""The dashboard client: the mirror first, a sender that never blocks training, and `evsys sync`.

Failure paths run against a scripted double (``tests/dashboard_double.py``) that fails on cue;
what the service stores is checked against the real service.
"""

from __future__ import annotations

import ast
import json
import logging
import pickle
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import doc_block
from dashboard_server import DATABASES, fresh_database, running_dashboard

import evsys
from evsys.tracking.errors import DashboardClientError, EvsysAuthError
from evsys.tracking.mirror import find_segments, read_segment
from evsys.tracking.settings import Settings
from tests.dashboard_double import ScriptedDashboard
from tests.dashboard_process import ServiceProcess, new_key

FAST = {"send_interval": 0.01, "retry_initial": 0.02, "retry_max": 0.1, "timeout": 5.0}


def sent_ids(log_dir: Path) -> list[str]:
    return [i for p in log_dir.rglob("*.sent") for i in p.read_text().split()]


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


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


def test_the_client_runs_on_the_standard_library_alone():
    code = (
        "import sys, evsys; evsys.DashboardClient, evsys.ExperimentRun; import evsys.tracking.sync;"
        "print(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    third_party = set(ast.literal_eval(done.stdout)) - {"__main__", "_distutils_hack"}  # site's own
    assert third_party == {"evsys"}


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
    client.create_run("exp-1", "r", id="run-1")
    for step in range(1, 201):
        client.log_step_metric("run-1", step, {"loss": 1 / step})
    client.update_run("run-1", status="completed")
    # on disk at once, before any flush
    assert len(mirrored(tmp_path)) == 202
    assert client.close(timeout=10) is True
    assert sent_from[:main_calls] == ["MainThread"]
    assert set(sent_from[main_calls:]) == {"evsys-dashboard-sender"}
    assert sorted(s for s, _ in double.steps("run-1")) == list(range(1, 201))
    assert max(double.batches) > 1  # batched, not one request a step
    assert sorted(sent_ids(tmp_path)) == sorted(w["id"] for w in mirrored(tmp_path))


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


def test_a_run_ending_while_the_service_is_down_waits_once_not_twice(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="evsys.tracking")
    port = free_port()
    client = evsys.DashboardClient(f"http://127.0.0.1:{port}", "good-key", log_dir=tmp_path, **FAST)
    with evsys.ExperimentRun(client, experiment_name="e", flush_timeout=0.5) as run:
        run.log_step(1, loss=1.0)
    started = time.monotonic()
    assert client.close(timeout=120) is False
    assert time.monotonic() - started < 60  # a second full wait would be 120 s
    assert f"run `evsys sync {tmp_path}`" in caplog.text
    ops = [w["op"] for w in mirrored(tmp_path)]
    assert ops == [
        "experiment.create",
        "run.create",
        "run.steps",
        "run.update",
        "experiment.update",
    ]
    assert caplog.text.count("does not answer") == 1  # warned once for the whole outage


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


# ---- against the real service: evsys sync, and the fault test ----
@pytest.fixture(scope="module", params=DATABASES)
def service(request, tmp_path_factory):
    """The service (uvicorn in this process), one per database; tests keep apart by project."""
    pytest.importorskip("fastapi", reason="the dashboard extra: pip install 'evsys[dashboard]'")
    with running_dashboard(request.param, tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@pytest.fixture
def service_key(service):
    return service.new_project().key


def sync(service, key, *dirs, monkeypatch, capsys, extra=()) -> tuple[int, str, str]:
    from evsys.cli import main

    monkeypatch.setenv("EVSYS_API_URL", service.url)
    monkeypatch.setenv("EVSYS_API_KEY", key)
    with pytest.raises(SystemExit) as exit_:
        main(["sync", *map(str, dirs), *extra])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def steps_held(service, key, run_id) -> list[tuple[int, str, float]]:
    with evsys.DashboardClient(service.url, key, offline=False, log_dir=Path("unused")) as reader:
        return [(s["step"], s["name"], s["value"]) for s in reader.get_run_steps(run_id)]


def steps_mirrored(*dirs: Path) -> dict[tuple[int, str], float]:
    """(step, name) → value as the mirrors say: the latest write of each pair wins."""
    writes = sorted((w for d in dirs for w in mirrored(d)), key=lambda w: w["time"])
    held = {}
    for write in writes:
        if write["op"] == "run.steps":
            for entry in write["data"]["steps"]:
                for name, value in entry["metrics"].items():
                    held[(entry["step"], name)] = value
    return held


def offline_arm(log_dir: Path, steps: range, *, run_id: str, exp_id: str, scale: float = 1.0):
    """One segment of an arm: an offline client writing run ``run_id``'s ``steps``."""
    with (
        evsys.DashboardClient(offline=True, log_dir=log_dir) as client,
        evsys.ExperimentRun(
            client, experiment_name="arm", experiment_id=exp_id, run_id=run_id
        ) as run,
    ):
        for step in steps:
            run.log_step(step, loss=scale / step, reward=scale * step)


def test_sync_twice_creates_no_duplicate(service, service_key, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    client = evsys.DashboardClient(offline=True, log_dir=tmp_path / "m")
    with evsys.ExperimentRun(client, experiment_name="sweep", recipe_kind="sft") as run:
        for step in range(1, 31):
            run.log_step(step, loss=1 / step)
        run.set_conclusion("done")
    client.close()
    writes = len(mirrored(tmp_path / "m"))

    code, out, err = sync(
        service, service_key, tmp_path / "m", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0, err
    assert f"{writes} writes, {writes} sent ({writes} applied, 0 already held)" in out
    first = steps_held(service, service_key, run.run_id)
    assert len(first) == 30

    code, out, err = sync(
        service, service_key, tmp_path / "m", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0, err
    assert f"({0} applied, {writes} already held)" in out
    assert steps_held(service, service_key, run.run_id) == first
    code, out, _ = sync(
        service,
        service_key,
        tmp_path / "m",
        monkeypatch=monkeypatch,
        capsys=capsys,
        extra=["--only-unsent"],
    )
    assert code == 0 and f"0 sent (0 applied, 0 already held), {writes} skipped as sent" in out
    with evsys.DashboardClient(service.url, service_key, log_dir=tmp_path / "r") as reader:
        experiment = reader.get_experiment(run.experiment_id)
        assert experiment["conclusion"] == "done"
        assert [r["id"] for r in experiment["runs"]] == [run.run_id]


def test_resumed_arms_and_machines_merge_by_step(
    service, service_key, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    exp_id, run_id = "exp-" + service_key[-8:], "run-" + service_key[-8:]
    offline_arm(tmp_path / "machine-a", range(1, 11), run_id=run_id, exp_id=exp_id)
    # the arm is requeued on another machine and replays steps 8-10 with new values
    offline_arm(
        tmp_path / "machine-b" / "arm-0", range(8, 16), run_id=run_id, exp_id=exp_id, scale=2.0
    )
    code, _, err = sync(
        service,
        service_key,
        tmp_path / "machine-a",
        tmp_path / "machine-b",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0, err
    held = steps_held(service, service_key, run_id)
    assert len(held) == len({(s, n) for s, n, _ in held}) == 15 * 2  # no duplicate
    assert {(s, n): v for s, n, v in held} == steps_mirrored(
        tmp_path / "machine-a", tmp_path / "machine-b"
    )
    assert dict(((s, n), v) for s, n, v in held)[(9, "reward")] == 18.0  # the later segment wins


def test_a_line_cut_by_a_kill_is_reported_and_the_rest_syncs(
    service, service_key, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    offline_arm(
        tmp_path / "m",
        range(1, 6),
        run_id="cut-" + service_key[-8:],
        exp_id="e-" + service_key[-8:],
    )
    segment = find_segments(tmp_path / "m")[0]
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # killed mid-line
    code, out, err = sync(
        service, service_key, tmp_path / "m", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0, err
    assert f"{segment}:{len(lines)}: incomplete last line" in err
    assert f"{len(lines) - 1} writes, {len(lines) - 1} sent" in out
    assert len(steps_held(service, service_key, "cut-" + service_key[-8:])) == 10


def test_a_corrupt_mirror_line_is_exit_2_naming_it_and_nothing_is_sent(
    service, service_key, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    run_id = "bad-" + service_key[-8:]
    offline_arm(tmp_path / "m", range(1, 4), run_id=run_id, exp_id="e-" + service_key[-8:])
    segment = find_segments(tmp_path / "m")[0]
    lines = segment.read_text().splitlines(keepends=True)
    lines[1] = '{"id": "x", "op": "run.explode", "data": {}}\n'
    segment.write_text("".join(lines))
    code, out, err = sync(
        service, service_key, tmp_path / "m", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2
    assert f"{segment}:2: not a write: op: unknown op 'run.explode'" in err
    assert "Traceback" not in err and out == ""
    with evsys.DashboardClient(service.url, service_key, log_dir=tmp_path / "r") as reader:
        assert reader.list_runs() == []


def test_sync_input_errors_and_an_unreachable_service(
    service, service_key, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    code, _, err = sync(
        service, service_key, tmp_path / "nowhere", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and f"evsys sync: {tmp_path / 'nowhere'}: no such directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = sync(
        service, service_key, tmp_path / "empty", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and "no mirror (*.writes.jsonl)" in err
    offline_arm(tmp_path / "m", range(1, 3), run_id="r", exp_id="e")
    code, _, err = sync(
        service, "evsys_wrong", tmp_path / "m", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and "HTTP 401" in err
    down = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    code, _, err = sync(down, service_key, tmp_path / "m", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 1 and "does not answer" in err


@pytest.mark.parametrize("database", DATABASES)
def test_service_killed_mid_run_then_sync_holds_exactly_the_mirror(
    database, tmp_path, monkeypatch, capsys
):
    """THE FAULT TEST: the service dies (SIGKILL) mid-run and comes back on the same database;
    after `evsys sync`, it holds exactly what the mirror holds: every step, no duplicate."""
    pytest.importorskip("fastapi", reason="the dashboard extra: pip install 'evsys[dashboard]'")
    monkeypatch.chdir(tmp_path)
    with fresh_database(database, tmp_path) as db_url:
        key = new_key(db_url)
        with ServiceProcess(db_url, tmp_path / "store") as process:
            run = run_through_a_crash(process, key, tmp_path / "arm" / "mirror")
            code, _, err = sync(
                process, key, tmp_path / "arm", monkeypatch=monkeypatch, capsys=capsys
            )
            assert code == 0, err
            held = steps_held(process, key, run.run_id)
            assert len(held) == len({(s, n) for s, n, _ in held})  # no duplicate
            assert {(s, n): v for s, n, v in held} == steps_mirrored(tmp_path / "arm")
            assert len(held) == 600
            with evsys.DashboardClient(process.url, key, log_dir=tmp_path / "r") as reader:
                assert reader.get_run(run.run_id)["status"] == "completed"
                assert reader.get_experiment(run.experiment_id)["conclusion"] == "survived"


def run_through_a_crash(process: ServiceProcess, key: str, log_dir: Path) -> evsys.ExperimentRun:
    """300 steps; the service is SIGKILLed at step 100, once it has taken some, and started
    again on the same database at step 200."""
    client = evsys.DashboardClient(process.url, key, log_dir=log_dir, **FAST)
    with evsys.ExperimentRun(client, experiment_name="fault", recipe_kind="sft") as run:
        for step in range(1, 301):
            run.log_step(step, loss=1 / step, reward=step / 300)
            time.sleep(0.002)  # a training step: the sender sends while the run goes on
            if step == 100:
                wait_for(lambda: sent_ids(log_dir))
                process.kill()  # mid-run: batches in flight or queued
            if step == 200:
                process.start()
        run.set_conclusion("survived")
    client.close(timeout=30)
    return run


def test_a_key_revoked_mid_run_warns_and_the_run_goes_on_locally(service, tmp_path, caplog):
    project = service.new_project()
    client = evsys.DashboardClient(service.url, project.key, log_dir=tmp_path / "m", **FAST)
    run = client.create_run("exp-1", "r")
    client.log_step_metric(run, 1, {"loss": 1.0})
    assert client.flush(timeout=10) is True
    service.revoke(project.key)
    with caplog.at_level(logging.WARNING, logger="evsys.tracking"):
        for step in range(2, 6):
            client.log_step_metric(run, step, {"loss": 1.0})
        assert client.flush(timeout=10) is False
        client.log_step_metric(run, 6, {"loss": 1.0})  # still mirrored, no error
        assert client.close(timeout=10) is False
    assert "rejected the API key" in caplog.text
    assert len(mirrored(tmp_path / "m")) == 7
    assert steps_held(service, service.new_project(project.name).key, run) == [(1, "loss", 1.0)]


# ---- a client never closed: the exit hook ----
NEVER_CLOSED = """
import sys, time, evsys
url, key, log_dir, run_id = sys.argv[1:]
client = evsys.DashboardClient(url, key, log_dir=log_dir)
client.create_run("exp-exit", "never closed", id=run_id)
for step in range(1, 21):
    client.log_step_metric(run_id, step, {"loss": 1 / step})
print(time.time(), flush=True)  # then the interpreter exits with the client open
"""


def exit_without_close(url: str, key: str, log_dir: Path, run_id: str) -> tuple[float, str]:
    """Run NEVER_CLOSED in a fresh interpreter: the seconds its exit took, and its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", NEVER_CLOSED, url, key, str(log_dir), run_id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return time.time() - float(done.stdout), done.stderr


def test_a_client_never_closed_sends_its_queued_writes_at_exit(service, service_key, tmp_path):
    _, err = exit_without_close(service.url, service_key, tmp_path / "m", "run-exit")
    assert [s for s, _, _ in steps_held(service, service_key, "run-exit")] == list(range(1, 21))
    assert "not sent" not in err
    assert len(sent_ids(tmp_path / "m")) == 21  # every write marked: nothing left to sync


def test_with_the_service_down_exit_waits_briefly_and_names_the_mirror(tmp_path):
    log_dir = tmp_path / "m"
    took, err = exit_without_close(f"http://127.0.0.1:{free_port()}", "k", log_dir, "run-down")
    assert took < 8  # a 2 s wait for every client together, then the writes stay mirrored
    (line,) = [x for x in err.splitlines() if "not sent before exit" in x]
    assert "21 write(s)" in line and str(log_dir) in line and "evsys sync" in line
    assert len(mirrored(log_dir)) == 21 and not sent_ids(log_dir)


def test_the_exit_hook_keeps_no_client_alive(double, tmp_path):
    import gc
    import weakref

    from evsys.tracking import exit_flush

    client = evsys.DashboardClient(double.url, "good-key", log_dir=tmp_path, **FAST)
    assert client in exit_flush._open_clients
    sender, gone = client._sender, weakref.ref(client)
    del client
    gc.collect()
    assert gone() is None
    assert sender.close(timeout=5) is True


def test_datasets_upload_resolve_and_download(service, service_key, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "1+1", "completion": "2"}\n')
    with evsys.DashboardClient(service.url, service_key, log_dir=tmp_path / "m") as client:
        first = client.upload("datasets", "arith", data)
        assert client.upload("datasets", "arith", data) == first  # same bytes, same version
        data.write_text('{"prompt": "2+2", "completion": "4"}\n')
        second = client.upload("datasets", "arith", data)
        assert (first["version"], second["version"]) == (1, 2)
        assert client.resolve("datasets", "arith")["id"] == second["id"]
        copy = client.download("datasets", first["id"], tmp_path / "cache" / "train.jsonl")
        assert copy.read_text() == '{"prompt": "1+1", "completion": "2"}\n'
        with pytest.raises(DashboardClientError) as missing:
            client.resolve("datasets", "nothing-by-this-name")
        assert missing.value.status == 404
        with pytest.raises(DashboardClientError, match="kind 'models'"):
            client.resolve("models", "x")


def test_sync_reports_each_refused_write_by_file_and_line_and_sends_the_rest(
    double, tmp_path, monkeypatch, capsys
):
    offline_arm(tmp_path / "m", range(1, 21), run_id="run-1", exp_id="exp-1")
    double.refuse = lambda write: write["op"] == "run.create"
    code, out, err = sync(
        double, "good-key", tmp_path / "m", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2
    segment = find_segments(tmp_path / "m")[0]
    assert f"refused by the service: {segment}:1: writes[0].data: refused on cue" in err
    assert "1 refused" in out
    assert len(double.steps("run-1")) == 40  # the rest of the batch went through
    assert {w["op"] for w in double.writes.values()} == {"run.steps", "run.update"}


def test_a_mirror_that_is_not_text_is_named(tmp_path):
    from evsys.tracking.mirror import MirrorLineError

    (tmp_path / "a.writes.jsonl").write_bytes(b'{"id": "\xff"}\n')
    with pytest.raises(MirrorLineError, match=r"a\.writes\.jsonl:1: not UTF-8 text"):
        read_segment(tmp_path / "a.writes.jsonl")


def test_the_readme_example_runs_as_written_offline(tmp_path, monkeypatch):
    """The documented ExperimentRun example, executed as written, against the mirror alone."""
    monkeypatch.setenv("EVSYS_OFFLINE", "1")
    monkeypatch.setenv("EVSYS_LOG_DIR", str(tmp_path))
    exec(compile(doc_block("## The dashboard service"), "<docs>", "exec"), {})
    writes = [w for segment in find_segments(tmp_path) for _, w in read_segment(segment).writes]
    steps = [s["step"] for w in writes if w["op"] == "run.steps" for s in w["data"]["steps"]]
    assert steps == list(range(1, 1001))
    (ending,) = [
        w["data"] for w in writes if w["op"] == "experiment.update" and "conclusion" in w["data"]
    ]
    assert ending["conclusion"] == "rank-8 LoRA wins"
