"""Arms that ask for different resources (``resources.*`` in their own configs) in one sweep:
the Slurm launcher submits one job array per distinct set, and each arm's job gets what its
arm asked for. Runs on the cluster of ``bash scripts/slurm-cluster start`` (see test_slurm)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import run_evsys
from test_slurm import LAUNCHER, by_overrides, slurm_cluster  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slurm


@pytest.fixture
def job_name() -> Iterator[str]:
    """A job name of this test's own; its jobs still on the cluster afterwards are cancelled."""
    name = f"evsys-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=30)


def _accounting(job_id: str) -> str:
    """``ReqCPUS|ReqMem|Timelimit|NNodes`` of one array task, as Slurm recorded its request."""
    done = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "ReqCPUS,ReqMem,Timelimit,NNodes"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def test_arms_of_different_resources_get_them_in_separate_job_arrays(
    workdir: Path, job_name: str
) -> None:
    done = run_evsys(
        "--multirun", LAUNCHER, f"hydra.launcher.name={job_name}",
        "resources.cpus_per_task=1,2", "resources.mem_gb=2", "resources.timeout_min=7",
        "seed=1,2", "algorithm.params.max_steps=3",
        cwd=workdir, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    arms = by_overrides(workdir)
    assert len(arms) == 4
    arrays: dict[int, set[str]] = {1: set(), 2: set()}
    for overrides, record in arms.items():
        assert record["status"] == "completed", record["error"]
        cpus = 1 if "resources.cpus_per_task=1" in overrides.split() else 2
        hydra = yaml.safe_load((Path(record["run_dir"]) / ".hydra" / "hydra.yaml").read_text())
        job_id = str(hydra["hydra"]["job"]["id"])  # the array task, e.g. 42_1
        arrays[cpus].add(job_id.split("_")[0])
        # Slurm granted what the arm asked for, the launcher's values elsewhere (1 node)
        assert _accounting(job_id) == f"{cpus}|2G|00:07:00|1", (overrides, _accounting(job_id))
        assert record["runtime"]["cpus"] == cpus  # the arm saw its CPUs (SLURM_CPUS_PER_TASK)
    # one job array per set of resources, two arms in each
    assert len(arrays[1]) == len(arrays[2]) == 1 and arrays[1] != arrays[2], arrays
    scripts = sorted((workdir / "outputs").rglob("*_submission.sh"))
    asked = {line for path in scripts for line in path.read_text().splitlines() if "cpus" in line}
    assert asked == {"#SBATCH --cpus-per-task=1", "#SBATCH --cpus-per-task=2"}, asked
