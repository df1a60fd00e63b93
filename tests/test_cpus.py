"""An arm's share of the CPUs, and the torch threads it runs (evsys.cpus)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_evsys, run_results

from evsys.cpus import arm_cpus, launcher_share, torch_threads, usable_cpus


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK", "EVSYS_ARM_CPUS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_affinity_is_the_limit_when_nothing_else_says(clean_env: pytest.MonkeyPatch) -> None:
    assert usable_cpus() == len(os.sched_getaffinity(0))
    assert arm_cpus() == (usable_cpus(), "CPU affinity")
    assert torch_threads() == (usable_cpus(), "CPU affinity")


def test_the_smallest_limit_wins(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SLURM_CPUS_PER_TASK", "1")
    clean_env.setenv("EVSYS_ARM_CPUS", "64")
    assert arm_cpus() == (1, "SLURM_CPUS_PER_TASK")
    clean_env.setenv("SLURM_CPUS_PER_TASK", "64")
    clean_env.setenv("EVSYS_ARM_CPUS", "1")
    assert arm_cpus() == (1, "EVSYS_ARM_CPUS")
    clean_env.setenv("EVSYS_ARM_CPUS", "not a number")  # ignored, not a crash
    assert arm_cpus()[1] != "EVSYS_ARM_CPUS"


def test_an_explicit_choice_wins_then_omp(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EVSYS_ARM_CPUS", "1")
    clean_env.setenv("OMP_NUM_THREADS", "3")
    assert torch_threads(explicit=5) == (5, "backend.params.num_threads")
    assert torch_threads() == (3, "OMP_NUM_THREADS")
    clean_env.delenv("OMP_NUM_THREADS")
    assert torch_threads() == (1, "EVSYS_ARM_CPUS")


def test_ranks_split_the_arms_cpus(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EVSYS_ARM_CPUS", "8")
    if usable_cpus() >= 8:
        assert torch_threads(ranks=4) == (2, "EVSYS_ARM_CPUS (8) / 4 ranks")
    assert torch_threads(ranks=1000)[0] == 1  # never zero


def test_a_launcher_splits_the_cpus_among_the_arms_at_once() -> None:
    assert launcher_share(1) == usable_cpus()
    assert launcher_share(usable_cpus() * 10) == 1
    assert launcher_share(3, cpus_per_arm=2) == 2  # the launcher's own setting


@pytest.mark.parametrize(
    "launcher",
    [["hydra/launcher=local_processes"], ["hydra/launcher=gpus", "hydra.launcher.max_parallel=2"]],
)
def test_arms_side_by_side_share_the_cpus(workdir: Path, launcher: list[str]) -> None:
    if "local_processes" in launcher[0]:
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    done = run_evsys(
        "--multirun",
        *launcher,
        "seed=1,2",
        "algorithm.params.max_steps=2",
        cwd=workdir,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    records = run_results(workdir / "outputs")
    assert len(records) == 2
    for record in records:
        assert record["runtime"]["cpus"] == max(1, usable_cpus() // 2), record["runtime"]
