"""Sweeps through a real Slurm cluster: arms complete, fail, or are cancelled, and say so.

Needs a reachable cluster (``bash scripts/slurm-cluster start`` gives one on this machine) and
evsys[slurm]. Skipped when there is none, unless ``EVSYS_REQUIRE_SLURM=1`` (set by CI), where a
missing cluster is a failure. Every sweep gets its own job name, so that whatever a failed test
leaves on the cluster is cancelled, and no test waits longer than its subprocess timeout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import run_evsys, run_results

pytestmark = pytest.mark.slurm

LAUNCHER = "hydra/launcher=slurm_single_node"  # 1 CPU, 4 GB, timeout_min 15 per arm
SWEEP_TIMEOUT_S = 90  # each sweep here takes 5-25 s on the 2-CPU test cluster


def _cluster_problem() -> str | None:
    """Why Slurm sweeps cannot run here, or None when they can."""
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        return "hydra-submitit-launcher is not installed: pip install 'evsys[slurm]'"
    if shutil.which("sinfo") is None:
        return "no Slurm client on PATH: bash scripts/slurm-cluster start"
    try:
        # scontrol ping answers at once; sinfo retries for ~10 s when the controller is down
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15)
        if ping.returncode != 0 or "UP" not in ping.stdout:
            return "slurmctld does not answer `scontrol ping`: bash scripts/slurm-cluster start"
        sinfo = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15, check=True
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return f"Slurm is not reachable: {exc}"
    states = sinfo.stdout.split()
    # "completing": a node still cleaning up after a job (an earlier run's cancelled arm), idle soon
    if not {"idle", "mixed", "completing"} & set(states):
        return f"no Slurm node is free for jobs (sinfo node states: {states or 'none'})"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> None:
    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("EVSYS_REQUIRE_SLURM") == "1":
        pytest.fail(f"EVSYS_REQUIRE_SLURM=1 but {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def job_name() -> Iterator[str]:
    """A job name of this test's own; its jobs still on the cluster afterwards are cancelled."""
    name = f"evsys-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=30)


def sweep(workdir: Path, job_name: str, *overrides: str) -> subprocess.CompletedProcess[str]:
    return run_evsys(
        "--multirun",
        LAUNCHER,
        f"hydra.launcher.name={job_name}",
        *overrides,
        cwd=workdir,
        timeout=SWEEP_TIMEOUT_S,
    )


def by_overrides(workdir: Path) -> dict[str, dict]:
    """The run_result.json of every arm, keyed by the arm's overrides (arm directory names vary)."""
    return {" ".join(r["overrides"]): r for r in run_results(workdir / "outputs")}


def sacct_states(job_name: str, tasks: int, settle_s: float = 15) -> list[str]:
    """The accounting states of the job's array tasks, once Slurm's database has all of them
    ended: it learns of a job's end a moment after the arm's result file exists."""
    deadline = time.monotonic() + settle_s
    while True:
        done = subprocess.run(
            ["sacct", "-n", "-X", "-S", "now-1hours", f"--name={job_name}", "-o", "State"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        states = done.stdout.split()
        settled = len(states) == tasks and not {"PENDING", "RUNNING", "COMPLETING"} & set(states)
        if settled or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def test_a_sweep_runs_every_arm_as_a_slurm_array_task(workdir: Path, job_name: str) -> None:
    done = sweep(workdir, job_name, "seed=1,2,3", "algorithm.params.max_steps=3")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    arms = by_overrides(workdir)
    assert sorted(arms) == [f"seed={s} algorithm.params.max_steps=3" for s in (1, 2, 3)]
    for record in arms.values():
        assert (record["status"], record["finished"]) == ("completed", True), record["error"]
    assert list((workdir / "outputs").rglob("sweep_result.json")), "the sweep did not aggregate"
    assert sacct_states(job_name, tasks=3) == ["COMPLETED"] * 3  # it really went through Slurm


def test_a_failing_arm_is_recorded_and_the_others_complete(workdir: Path, job_name: str) -> None:
    # fail_at_step=5 never comes (3 steps): two arms complete, one raises at step 1
    done = sweep(
        workdir, job_name, "backend.params.fail_at_step=1,5,null", "algorithm.params.max_steps=3"
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    status = {o: (r["status"], r["finished"]) for o, r in by_overrides(workdir).items()}
    assert status == {
        "backend.params.fail_at_step=1 algorithm.params.max_steps=3": ("failed", True),
        "backend.params.fail_at_step=5 algorithm.params.max_steps=3": ("completed", True),
        "backend.params.fail_at_step=null algorithm.params.max_steps=3": ("completed", True),
    }


# The long arm never ends on its own: one test cancels it, the other's gets Slurm's timeout signal
# after 1 min. Mock steps take 0.2-1 ms by machine and load (200,000 of them once ended within the
# minute). The medium arm runs on and completes after the cancel is recorded; the short is instant.
LONG, MEDIUM, SHORT = 5_000_000, 30_000, 3
RECORDED_WITHIN_S = 10


def test_a_cancelled_arm_is_recorded_cancelled_within_seconds(workdir: Path, job_name: str) -> None:
    log = (workdir / "multirun.log").open("w")
    command = [
        sys.executable, "-m", "evsys", "--multirun", LAUNCHER, f"hydra.launcher.name={job_name}",
        f"algorithm.params.max_steps={LONG},{MEDIUM},{SHORT}",
    ]  # fmt: skip
    multirun = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        long_arm = _wait_for_arm_to_start(workdir, f"algorithm.params.max_steps={LONG}")
        _wait_for_metrics(long_arm)  # cancelled while it trains, not while it starts
        hydra_config = yaml.safe_load((long_arm / ".hydra" / "hydra.yaml").read_text())
        slurm_id = str(hydra_config["hydra"]["job"]["id"])  # the array task, e.g. 42_0
        subprocess.run(["scancel", slurm_id], check=True, timeout=30)
        cancelled_at = time.monotonic()

        recorded_after = None  # seconds from scancel to the arm's record saying it finished
        while multirun.poll() is None and time.monotonic() - cancelled_at < SWEEP_TIMEOUT_S:
            if recorded_after is None and _finished(long_arm):
                recorded_after = time.monotonic() - cancelled_at
            time.sleep(0.25)
        if recorded_after is None and _finished(long_arm):
            recorded_after = time.monotonic() - cancelled_at
        if multirun.poll() is None:
            pytest.fail(f"the multirun did not end {SWEEP_TIMEOUT_S} s after its arm was cancelled")
    finally:
        if multirun.poll() is None:
            multirun.kill()
        multirun.wait(timeout=30)
        log.close()

    output = (workdir / "multirun.log").read_text()[-3000:]
    assert multirun.returncode == 1, output
    records = by_overrides(workdir)
    status = {o: r["status"] for o, r in records.items()}
    assert status == {
        # scancel's SIGTERM reached the arm, which recorded itself
        f"algorithm.params.max_steps={LONG}": "cancelled",
        f"algorithm.params.max_steps={MEDIUM}": "completed",  # was still running at the cancel
        f"algorithm.params.max_steps={SHORT}": "completed",
    }, output
    assert recorded_after is not None, "the cancelled arm has no finished record"
    assert recorded_after <= RECORDED_WITHIN_S, f"recorded {recorded_after:.1f} s after scancel"
    cancelled = records[f"algorithm.params.max_steps={LONG}"]
    assert "SIGTERM" in cancelled["error"], cancelled["error"]
    assert "train/loss" in cancelled["metrics"]  # what it logged before the cancel
    # How long it really ran: at least from its first logged step to its last.
    lines = (Path(cancelled["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    times = [json.loads(line)["time"] for line in lines]
    assert cancelled["duration_s"] >= max(times) - min(times) > 0, cancelled["duration_s"]


def test_a_timed_out_arm_is_recorded_timeout_not_completed(workdir: Path, job_name: str) -> None:
    # timeout_min=3: Slurm sends submitit's USR2 at 1 min, long before LONG steps are done
    done = run_evsys(
        "--multirun", LAUNCHER, f"hydra.launcher.name={job_name}", "hydra.launcher.timeout_min=3",
        f"algorithm.params.max_steps={LONG}",
        cwd=workdir, timeout=150,
    )  # fmt: skip
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 1, output
    (record,) = by_overrides(workdir).values()
    assert (record["status"], record["finished"]) == ("timeout", True), output
    assert "SIGUSR2" in record["error"], record["error"]
    assert record["duration_s"] > 30 and "train/loss" in record["metrics"]


def _wait_for_arm_to_start(workdir: Path, override: str, timeout_s: float = 60) -> Path:
    """The directory of the arm with ``override`` once its job runs the task: Hydra has written
    the arm's .hydra/ files (hydra.yaml, with the Slurm job id, before overrides.yaml)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in (workdir / "outputs").rglob(".hydra/overrides.yaml"):
            try:
                if override in (yaml.safe_load(path.read_text()) or []):
                    return path.parent.parent
            except yaml.YAMLError:
                pass  # still being written
        time.sleep(0.25)
    pytest.fail(f"the arm {override} did not start within {timeout_s:.0f} s")


def _wait_for_metrics(arm_dir: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    metrics = arm_dir / "metrics.jsonl"
    while time.monotonic() < deadline:
        if metrics.exists() and metrics.stat().st_size > 0:
            return
        time.sleep(0.1)
    pytest.fail(f"{arm_dir.name} logged no metric within {timeout_s:.0f} s")


def _finished(arm_dir: Path) -> bool:
    return any(record.get("finished") for record in run_results(arm_dir))
