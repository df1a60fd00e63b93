"""A signal ends an arm in any phase: recorded ``cancelled`` or ``timeout`` with its real duration
and the metrics it logged, never swallowed by best-effort eval, and run again by ``evsys resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import install_plugin, run_evsys

from evsys.interrupts import ArmInterrupted, interruption

STATUS = {signal.SIGTERM: "cancelled", signal.SIGINT: "cancelled", signal.SIGUSR2: "timeout"}


def _run(overrides: list[str], run_dir: Path, **dependencies: Any) -> Any:
    from evsys.compose.compose import compose_and_validate
    from evsys.run.dependencies import ArmDependencies
    from evsys.run.runner import run_arm

    _, config = compose_and_validate(overrides)
    return run_arm(
        config, run_dir, overrides=overrides, dependencies=ArmDependencies(**dependencies)
    )


def _record(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run_result.json").read_text())


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(5)  # the handler raises long before this ends


@pytest.fixture
def signalling_backend(clean_registries: None) -> None:
    """``backend=mock_signal``: the mock backend, sending itself ``signal_at`` at that step."""
    from pydantic import Field

    from evsys.backends.mock.backend import MockBackend
    from evsys.backends.mock.sft import MockSFT
    from evsys.registry import register_algorithm, register_backend

    @register_backend("mock_signal")
    class SignallingBackend(MockBackend):
        class Config(MockBackend.Config):
            signal_at: int = Field(5, ge=1)
            signum: int = int(signal.SIGTERM)

        def check_step(self, step: int) -> None:
            if step == self.cfg.signal_at:
                time.sleep(0.3)  # a run that took a while: its record must say so
                _signal_self(self.cfg.signum)

    register_algorithm("sft", backend="mock_signal")(MockSFT)


@pytest.mark.parametrize("signum", list(STATUS))
def test_a_signal_in_training_ends_the_arm_recorded_with_its_metrics(
    workdir: Path, signalling_backend: None, signum: int
) -> None:
    handlers_before = {s: signal.getsignal(s) for s in STATUS}
    with pytest.raises(ArmInterrupted) as raised:
        _run(["backend=mock_signal", f"backend.params.signum={int(signum)}"], workdir / "r")
    assert raised.value.status == STATUS[signum]
    record = _record(workdir / "r")
    assert (record["status"], record["finished"]) == (STATUS[signum], True)
    assert signal.Signals(signum).name in record["error"]
    assert record["duration_s"] >= 0.3  # its real duration, not the moment of the record
    assert "train/loss" in record["metrics"]  # what it logged before the signal
    assert not any(k.startswith("eval/") for k in record["metrics"])  # eval never ran
    assert {s: signal.getsignal(s) for s in STATUS} == handlers_before  # restored


@pytest.mark.parametrize("phase", ["started record", "log store closed"])
def test_a_signal_at_either_end_of_an_arm_still_leaves_its_record(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, phase: str
) -> None:
    """Ctrl-C just after the started record is written, or while the log stores hear of the
    end (the dashboard's HTTP call, slow on a busy machine): the arm ends with its record, never
    left 'running' on disk."""
    import evsys.run.runner as runner

    target = "write_run_started" if phase == "started record" else "_close_quietly"
    real = getattr(runner, target)

    def then_ctrl_c(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        _signal_self(signal.SIGINT)

    monkeypatch.setattr(runner, target, then_ctrl_c)
    with pytest.raises(ArmInterrupted):
        _run(["algorithm.params.max_steps=2"], workdir / "r")
    record = _record(workdir / "r")
    # An arm stopped before its work records that; one stopped after it keeps what it did.
    expected = "cancelled" if phase == "started record" else "completed"
    assert (record["status"], record["finished"]) == (expected, True)


def _signalling_client(signum: int, calls: list[str]) -> Any:
    def factory(config: Any, checkpoint: str | None) -> Any:
        calls.append(str(checkpoint))
        _signal_self(signum)

    return factory


@pytest.mark.parametrize(
    ("overrides", "phase"),
    [
        (["algorithm.params.max_steps=3"], "eval"),
        (["algorithm.params.max_steps=3", "eval.baseline=true"], "baseline"),
        (["experiment=continual_mock", "algorithm.params.max_steps=3"], "continual scoring"),
    ],
)
def test_a_timeout_in_best_effort_scoring_is_not_swallowed(
    workdir: Path, overrides: list[str], phase: str
) -> None:
    calls: list[str] = []
    with pytest.raises(ArmInterrupted):
        _run(overrides, workdir / "r", inference_factory=_signalling_client(signal.SIGUSR2, calls))
    record = _record(workdir / "r")
    assert record["status"] == "timeout", phase
    assert len(calls) == 1, f"{phase}: scoring went on after the signal"
    assert not any(k.endswith("_error") for k in record["extras"]), record["extras"]


class UncompletedJobError(RuntimeError):
    """Stands in for submitit's timeout exception, recognised by name and module."""


UncompletedJobError.__module__ = "submitit.core.utils"


def test_submitits_timeout_exception_ends_the_arm_as_timeout(workdir: Path) -> None:
    def factory(config: Any, checkpoint: str | None) -> Any:
        raise UncompletedJobError("Job not requeued because: timed-out and not checkpointable.")

    with pytest.raises(UncompletedJobError):
        _run(["algorithm.params.max_steps=3"], workdir / "r", inference_factory=factory)
    record = _record(workdir / "r")
    assert record["status"] == "timeout"
    assert "eval_error" not in record["extras"]
    assert interruption(RuntimeError("a real error")) is None


def test_retries_stop_at_an_interruption() -> None:
    from evsys.harness.retry import call_with_retry

    attempts = []

    def call() -> None:
        attempts.append(1)
        raise UncompletedJobError("timed out")

    with pytest.raises(UncompletedJobError):
        call_with_retry(call, max_attempts=5, sleep=lambda s: None)
    assert len(attempts) == 1


def test_a_real_error_in_eval_is_still_best_effort(workdir: Path) -> None:
    def factory(config: Any, checkpoint: str | None) -> Any:
        raise RuntimeError("the eval service is down")

    outcome = _run(["algorithm.params.max_steps=3"], workdir / "r", inference_factory=factory)
    assert outcome.record["status"] == "completed"
    assert "the eval service is down" in outcome.record["extras"]["eval_error"]


# -- from the command line ------------------------------------------------------------------------

STOP_ONCE = '''
import json, os, time

from pydantic import BaseModel, ConfigDict

from evsys.protocols import RunResult


class StopOnce:
    """Logs a metric, then waits to be stopped; an arm whose directory has a `started` file from
    an earlier attempt completes at once (so that resuming the sweep finishes it)."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, **params):
        self.cfg = self.Config(**params)

    def train(self, ctx):
        marker = ctx.run_dir.parent / f"started_{ctx.config.seed}"
        if not marker.exists():
            ctx.log_store.log_metrics({"train/loss": 0.5}, step=1)
            marker.write_text(str(os.getpid()))
            time.sleep(120)
        return RunResult(run_id=ctx.run_id, status="completed", metrics={"train/loss": 0.1})
'''


@pytest.fixture
def stop_once_env(tmp_path: Path) -> dict[str, str]:
    site = install_plugin(
        tmp_path / "site",
        "evsys_stop_once",
        STOP_ONCE,
        {"evsys.algorithms": {"stop_once": "evsys_stop_once:StopOnce"}},
    )
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def _wait_for(path_glob: str, root: Path, process: subprocess.Popen, timeout_s: float = 60) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = sorted(root.rglob(path_glob))
        if found:
            return found[0]
        if process.poll() is not None:
            pytest.fail(f"the multirun ended ({process.returncode}) before {path_glob} appeared")
        time.sleep(0.2)
    pytest.fail(f"{path_glob} did not appear within {timeout_s:.0f} s")


@pytest.mark.parametrize("launcher", ["basic", "evsys_gpus"])
def test_a_cancelled_sweep_says_so_and_resume_runs_the_arm_again(
    workdir: Path, stop_once_env: dict[str, str], launcher: str
) -> None:
    command = [
        sys.executable, "-m", "evsys", "--multirun", f"hydra/launcher={launcher}",
        "algorithm=stop_once", "eval=none", "seed=1",
    ]  # fmt: skip
    env = {**os.environ, **stop_once_env}
    with (workdir / "multirun.log").open("w") as log:
        multirun = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=log)
        try:
            marker = _wait_for("started_1", workdir / "outputs", multirun)
            time.sleep(0.5)
            arm_pid = int(marker.read_text())
            os.kill(arm_pid, signal.SIGTERM)  # the arm's process: the sweep's own, or its child
            multirun.wait(timeout=60)
        finally:
            if multirun.poll() is None:
                multirun.kill()
                multirun.wait()
    output = (workdir / "multirun.log").read_text()[-3000:]
    sweep_dir = marker.parent
    (arm,) = json.loads((sweep_dir / "sweep_plan.json").read_text())["arms"]
    record = _record(sweep_dir / arm["name"])
    assert (record["status"], record["finished"]) == ("cancelled", True), output
    assert record["duration_s"] >= 0.5, record["duration_s"]
    assert record["metrics"] == {"train/loss": 0.5}
    # In process the sweep itself was stopped (128 + SIGTERM); with a launcher it ran to its end
    # and counts the arm as not completed.
    assert multirun.returncode == (143 if launcher == "basic" else 1), output
    assert "Traceback" not in output

    resumed = run_evsys("resume", str(sweep_dir), cwd=workdir, module=False, env=stop_once_env)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert _record(sweep_dir / arm["name"])["status"] == "completed"
