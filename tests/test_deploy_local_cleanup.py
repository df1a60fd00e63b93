"""A ``--to local`` start that fails leaves no server process and no files behind.

No model is trained or merged here: the merge writes a stand-in directory, and the "server" is a
small Python program started exactly as the real one is (detached, in a session of its own) that
exits at once, never answers, ignores SIGTERM, or serves /health. Hypothesis picks where the
start fails, whether the cleanup itself fails (the process will not die, files cannot be
removed) and whether an earlier deploy's files are there. After each failure the run directory
is as it was and no server runs, or the error and the recorded entry name exactly what is left;
and a second deploy succeeds.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_runs import finished_run, record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evsys.cli import main
from evsys.deploy import local
from evsys.deploy.actions import deploy_run, stop_run
from evsys.deploy.cleanup import DeployFailed
from evsys.errors import BackendError

SERVER = textwrap.dedent(
    """
    import http.server, signal, sys, time
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "exit":
        sys.exit("the model does not fit in memory")
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode in ("silent", "stubborn"):
        while True:
            time.sleep(1)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer((host, port), Health).serve_forever()
    """
)
STEPS = ["merge", "start", "exit", "silent", "stubborn"]
CLEANUP = [None, "process survives", "files stay"]


class Harness:
    """The local deployer with its merge and its server stood in for; every server it started."""

    def __init__(self, mp: pytest.MonkeyPatch, script: Path):
        self.mode, self.fail_merge, self.fail_start = "serve", False, False
        self.pids: list[int] = []
        real_start = local.start_detached

        def merge(base_model: str, adapter: Path, out: Path, dtype: str | None) -> None:
            if self.fail_merge:
                raise BackendError("could not merge: out of memory")
            if out.exists():  # replaced, as the real merge replaces it
                shutil.rmtree(out)
            out.mkdir()
            (out / "config.json").write_text("{}")

        def start(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> int:
            if self.fail_start:
                raise BackendError("could not start the server: no python")
            pid = real_start(command, cwd, env, log)
            self.pids.append(pid)
            return pid

        def command(_: Any, server: str, model_id: str, host: str, port: int) -> list[str]:
            return [sys.executable, str(script), self.mode, host, str(port)]

        mp.setattr(local, "merge_adapter", merge)
        mp.setattr(local, "start_detached", start)
        mp.setattr(local, "_STOP_GRACE_S", 0.5)
        mp.setattr(local.LocalDeployer, "_server", lambda _: "transformers")
        mp.setattr(local.LocalDeployer, "_command", command)

    def running(self) -> set[int]:
        return {pid for pid in self.pids if local.is_alive(pid)}

    def kill_all(self) -> None:
        for pid in self.running():
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    with pytest.MonkeyPatch.context() as mp:
        stand_in = Harness(mp, script)
        try:
            yield stand_in
        finally:
            stand_in.kill_all()


PARAMS = {"startup_timeout_s": 1.5}


def test_a_server_that_exits_is_reported_and_leaves_nothing(
    tmp_path: Path, harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    run = finished_run(tmp_path / "run")
    before = _files(run)
    harness.mode = "exit"
    assert _cli(["deploy", str(run), "--to", "local", "startup_timeout_s=5"]) == 1
    err = capsys.readouterr().err
    assert "exited before it was ready" in err and "does not fit in memory" in err
    assert _files(run) == before and not (run / "deploy").exists()
    assert harness.pids and not harness.running()
    assert "deployments" not in record(run)


def test_a_server_that_will_not_die_is_named_with_how_to_end_it(
    tmp_path: Path, harness: Harness, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    run = finished_run(tmp_path / "run")
    harness.mode = "silent"
    monkeypatch.setattr(local, "terminate", lambda pid, started: False)  # the kill fails
    assert _cli(["deploy", str(run), "--to", "local", "startup_timeout_s=0.5"]) == 1
    err = capsys.readouterr().err
    (pid,) = harness.running()
    assert f"server process {pid}" in err and f"kill -KILL -- -{pid}" in err
    (entry,) = record(run)["deployments"]
    assert entry["status"] == "failed" and "did not answer" in entry["details"]["error"]
    assert [item["remove"] for item in entry["details"]["leftovers"]] == [f"kill -KILL -- -{pid}"]
    assert not (run / "deploy").exists()  # the files went; only the process is left


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    step=st.sampled_from(STEPS),
    cleanup=st.sampled_from(CLEANUP),
    earlier_deploy=st.booleans(),
)
def test_a_local_start_failing_anywhere_leaves_nothing_unnamed_and_the_next_succeeds(
    step: str, cleanup: str | None, earlier_deploy: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        script = Path(tmp) / "server.py"
        script.write_text(SERVER)
        harness = Harness(mp, script)
        try:
            _fail_then_succeed(Path(tmp), harness, mp, step, cleanup, earlier_deploy)
        finally:
            harness.kill_all()


def _fail_then_succeed(
    tmp: Path,
    harness: Harness,
    mp: pytest.MonkeyPatch,
    step: str,
    cleanup: str | None,
    earlier_deploy: bool,
) -> None:
    run = finished_run(tmp / "run")
    if earlier_deploy:  # a stopped deploy's files, of another model id: not this deploy's
        (run / "deploy" / "local" / "older").mkdir(parents=True)
        (run / "deploy" / "local" / "older" / "config.json").write_text("{}")
    before = _files(run)
    harness.fail_merge, harness.fail_start = step == "merge", step == "start"
    harness.mode = step if step in ("exit", "silent", "stubborn") else "serve"
    with mp.context() as failing:
        if cleanup == "process survives":
            failing.setattr(local, "terminate", lambda pid, started: False)
        elif cleanup == "files stay":
            failing.setattr(local.shutil, "rmtree", _refuse_to_remove)
        with pytest.raises(BackendError) as failed:
            deploy_run(run, "local", {**PARAMS, "startup_timeout_s": 0.5})

    leftovers = failed.value.leftovers if isinstance(failed.value, DeployFailed) else []
    named = {item.what for item in leftovers}
    alive = harness.running()
    assert {f"server process {pid} (its process group)" for pid in alive} == {
        what for what in named if what.startswith("server process")
    }, (step, cleanup, str(failed.value))
    left_paths = {Path(what.split(" ", 2)[-1]) for what in named if " /" in what}
    assert all(path.exists() for path in left_paths), (step, cleanup, named)
    new = _files(run) - before
    assert all(any(path == p or p in path.parents for p in left_paths) for path in new), (
        step, cleanup, new, named,
    )  # fmt: skip
    assert before <= _files(run)  # the earlier deploy's files are untouched
    if named:
        (entry,) = record(run)["deployments"]
        assert entry["status"] == "failed"
        assert {item["what"] for item in entry["details"]["leftovers"]} == named
    else:
        assert "deployments" not in record(run)
    harness.kill_all()

    harness.mode, harness.fail_merge, harness.fail_start = "serve", False, False
    entry = deploy_run(run, "local", PARAMS)
    try:
        assert entry["status"] == "running" and local.is_alive(entry["details"]["pid"])
        assert (Path(entry["details"]["merged_model"]) / "config.json").is_file()
    finally:
        assert [e["status"] for e in stop_run(run)] == ["stopped"]
    assert not harness.running()


def _refuse_to_remove(path: Any, *args: Any, **kwargs: Any) -> None:
    raise PermissionError(13, "Permission denied", str(path))


def _files(run: Path) -> set[Path]:
    """Every path under the run directory but its record (and the record's lock)."""
    skip = {run / "run_result.json", run / ".deployments.lock"}
    return {path for path in run.rglob("*") if path not in skip}


def _cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)
