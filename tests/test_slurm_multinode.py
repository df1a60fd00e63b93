"""One arm across two Slurm nodes: ``EVSYS_SLURM_NODES=2 bash scripts/slurm-cluster start`` gives
a cluster of two nodes on this machine, each slurmd in its own network namespace.

The arm's process runs on the job's first node and starts one torch.distributed.run per node
with srun; the ranks meet through c10d at the first node and train over gloo (CPU). Skipped
without such a cluster, unless ``EVSYS_REQUIRE_SLURM=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require, run_evsys
from test_slurm import (
    _cluster_problem,
    _wait_for_arm_to_start,
    _wait_for_metrics,
    by_overrides,
)

pytestmark = pytest.mark.slurm

LAUNCHER = "hydra/launcher=slurm_single_node"
# The tiny model, no eval: the arm is its training. The global batch (4 rows a step) is the
# same whether 1 or 2 ranks take it.
TINY = [
    "backend=local",
    "model=tiny",
    "eval=none",
    "algorithm.params.batch_size=4",
    "algorithm.params.learning_rate=5e-3",
]
SWEEP_TIMEOUT_S = 600  # a 2-node arm takes ~1-2 min on the 2-CPU test machine, most of it imports


@pytest.fixture(scope="module", autouse=True)
def two_node_cluster() -> None:
    problem = _cluster_problem() or _too_few_nodes(2)
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


def _too_few_nodes(wanted: int) -> str | None:
    states = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=30
    ).stdout.split("\n")
    free = [line for line in states if line.split()[-1:] and line.split()[-1] in ("idle", "mixed")]
    if len(free) < wanted:
        return (
            f"{wanted} free Slurm nodes needed, found {len(free)}: "
            f"EVSYS_SLURM_NODES={wanted} bash scripts/slurm-cluster start"
        )
    return None


def _losses(run_dir: Path) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [m["train/loss"] for m in lines if "train/loss" in m]


def _job_nodes(name: str) -> list[str]:
    done = subprocess.run(
        ["sacct", "-n", "-X", "-S", "now-1hours", f"--name={name}", "-o", "NNodes,NodeList%40"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return [" ".join(line.split()) for line in done.stdout.splitlines() if line.strip()]


def test_two_arms_each_on_two_nodes_train_as_one_node_with_the_same_batch(
    workdir: Path, job_name: str
) -> None:
    require("trl", "pip install 'evsys[local]'")
    require("peft", "pip install 'evsys[local]'")
    steps = ["algorithm.params.max_steps=3"]
    done = run_evsys(
        "--multirun", LAUNCHER, f"hydra.launcher.name={job_name}", "hydra.launcher.nodes=2",
        "backend.params.num_nodes=2", *TINY, *steps, "seed=1,2",
        cwd=workdir, timeout=SWEEP_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    arms = by_overrides(workdir)
    assert len(arms) == 2
    for record in arms.values():
        assert record["status"] == "completed", record["error"]
        assert (record["runtime"]["world_size"], record["runtime"]["nodes"]) == (2, 2)
        assert record["metrics"]["train/world_size"] == 2
        # rank 0 alone logged each step and saved the adapter
        assert len(_losses(Path(record["run_dir"]))) == 3
        assert (Path(record["run_dir"]) / "checkpoints" / "final").is_dir()
    # Slurm ran each arm as one job over both nodes
    assert _job_nodes(job_name) == ["2 evsys-n[1-2]"] * 2, _job_nodes(job_name)

    # The same arm (seed 1) in one process, here: the same losses, up to float reductions.
    from evsys.compose.compose import compose_and_validate
    from evsys.run.runner import run_arm

    overrides = [*TINY, *steps, "seed=1"]
    _, config = compose_and_validate(overrides)
    single = run_arm(config, workdir / "single", overrides=overrides).record
    assert single["status"] == "completed", single["error"]
    two_nodes = next(r for o, r in arms.items() if "seed=1" in o.split())
    expected, got = _losses(workdir / "single"), _losses(Path(two_nodes["run_dir"]))
    assert got == pytest.approx(expected, rel=0.02), (got, expected)
    assert _losses(Path(arms[next(o for o in arms if "seed=2" in o.split())]["run_dir"])) != got


def test_a_node_lost_mid_arm_fails_that_arm_only_and_resume_reruns_it(
    workdir: Path, job_name: str
) -> None:
    require("trl", "pip install 'evsys[local]'")
    two_nodes = [*TINY, "resources.nodes=2", "backend.params.num_nodes=2"]
    two_nodes += ["algorithm.params.max_steps=12"]
    quoted = ",".join(f"'{line}'" for line in two_nodes)
    arms = f"hydra.sweeper.arms=[[{quoted}],['backend=mock','algorithm.params.max_steps=3']]"
    command = [
        sys.executable, "-m", "evsys", "--multirun", LAUNCHER, f"hydra.launcher.name={job_name}",
        arms,
    ]  # fmt: skip
    with (workdir / "multirun.log").open("w") as log:
        multirun = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            arm_dir = _wait_for_arm_to_start(workdir, "backend.params.num_nodes=2", timeout_s=120)
            _wait_for_metrics(arm_dir, timeout_s=300)  # it trains on both nodes
            # The second node is lost: every process of this arm there dies at once.
            killed = _kill_in_node("evsys-n2", str(arm_dir))
            assert killed, "no process of the arm ran on the second node"
            multirun.wait(timeout=SWEEP_TIMEOUT_S)
        finally:
            if multirun.poll() is None:
                multirun.kill()
                multirun.wait(timeout=30)
    output = (workdir / "multirun.log").read_text()[-3000:]
    assert multirun.returncode == 1, output
    records = by_overrides(workdir)
    status = {o: r["status"] for o, r in records.items()}
    assert sorted(status.values()) == ["completed", "failed"], status
    lost = next(r for o, r in records.items() if "backend.params.num_nodes=2" in o)
    assert lost["status"] == "failed" and "data-parallel training" in lost["error"], lost["error"]
    other = next(r for o, r in records.items() if "backend=mock" in o)

    sweep_dir = next((workdir / "outputs").rglob("sweep_plan.json")).parent
    again = run_evsys("resume", str(sweep_dir), cwd=workdir, module=False, timeout=SWEEP_TIMEOUT_S)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = by_overrides(workdir)
    rerun = next(r for o, r in after.items() if "backend.params.num_nodes=2" in o)
    assert rerun["status"] == "completed", rerun["error"]
    assert rerun["runtime"]["nodes"] == 2
    kept = next(r for o, r in after.items() if "backend=mock" in o)
    assert kept["run_id"] == other["run_id"]  # the arm that completed was not run again


def _kill_in_node(namespace: str, marker: str) -> list[int]:
    """SIGKILL every process in the node's network namespace whose command line has marker."""
    pids = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    killed = []
    for pid in map(int, pids):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if marker in cmdline:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass  # ended meanwhile
    return killed
