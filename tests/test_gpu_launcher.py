"""The evsys_gpus launcher: one process per arm, each GPU arm on GPU slots of its own.

No GPU is needed: a GPU slot is only a CUDA_VISIBLE_DEVICES entry, so these sweeps declare the
mock backend a GPU backend (``hydra.launcher.gpu_backends=[mock]``) and let a probe algorithm,
installed through an entry point, record what each arm's process saw and when it ran.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest
from conftest import install_plugin, run_evsys

PROBE = '''
import json, os, signal, time

from pydantic import BaseModel, ConfigDict

from evsys.protocols import RunResult


class SlotProbe:
    """Records the GPUs its process sees and when it ran; kills its own process on one seed."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        sleep_s: float = 1.0
        kill_seed: int | None = None

    def __init__(self, **params):
        self.cfg = self.Config(**params)

    def train(self, ctx):
        start = time.time()
        if ctx.seed == self.cfg.kill_seed:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.cfg.sleep_s)
        probe = {"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start,
                 "end": time.time(), "pid": os.getpid()}
        (ctx.run_dir / "probe.json").write_text(json.dumps(probe))
        return RunResult(run_id=ctx.run_id, status="completed")
'''

SWEEP_TIMEOUT_S = 60  # a hung launcher fails the test instead of the suite
GPU_MOCK = ["hydra.launcher.gpus=[0,1]", "hydra.launcher.gpu_backends=[mock]"]


@pytest.fixture
def probe_env(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH with an installed distribution that registers the ``slot_probe`` algorithm."""
    site = install_plugin(
        tmp_path / "site",
        "evsys_slot_probe",
        PROBE,
        {"evsys.algorithms": {"slot_probe": "evsys_slot_probe:SlotProbe"}},
    )
    return {"PYTHONPATH": str(site)}


def sweep(workdir: Path, env: dict[str, str], *overrides: str) -> subprocess.CompletedProcess[str]:
    return run_evsys(
        "--multirun",
        "algorithm=slot_probe",
        "eval=none",
        *overrides,
        cwd=workdir,
        env=env,
        timeout=SWEEP_TIMEOUT_S,
    )


def arms(workdir: Path) -> dict[str, dict]:
    """Arm name → its row in sweep_result.json, with the probe it wrote (None if it wrote none)."""
    (root,) = (workdir / "outputs" / "sweeps").glob("*/*")
    rows = json.loads((root / "sweep_result.json").read_text())["arms"]
    out = {}
    for row in rows:
        probe = root / row["name"] / "probe.json"
        out[row["name"]] = {
            **row,
            "probe": json.loads(probe.read_text()) if probe.exists() else None,
        }
    return out


def test_each_gpu_arm_runs_on_a_slot_of_its_own(workdir: Path, probe_env: dict[str, str]) -> None:
    done = sweep(workdir, probe_env, "hydra/launcher=gpus", *GPU_MOCK, "seed=1,2,3,4")
    assert done.returncode == 0, done.stdout + done.stderr
    found = arms(workdir)
    assert {name: arm["status"] for name, arm in found.items()} == {
        f"seed{s}": "completed" for s in (1, 2, 3, 4)
    }
    probes = [arm["probe"] for arm in found.values()]
    assert all(p["visible"] in {"0", "1"} for p in probes), probes
    assert len({p["pid"] for p in probes}) == 4  # a process per arm

    overlapping = [
        (a, b)
        for a, b in itertools.combinations(probes, 2)
        if a["start"] < b["end"] and b["start"] < a["end"]
    ]
    assert overlapping, "no two arms ran at once: max_parallel should default to the 2 slots"
    assert all(a["visible"] != b["visible"] for a, b in overlapping), overlapping
    assert "seed1: started, CUDA_VISIBLE_DEVICES=" in done.stdout + done.stderr


def test_arms_of_other_backends_see_no_gpu(workdir: Path, probe_env: dict[str, str]) -> None:
    # gpu_backends defaults to [local]: mock arms take no slot
    done = sweep(
        workdir, probe_env, "hydra/launcher=evsys_gpus", "hydra.launcher.gpus=[0,1]", "seed=1,2"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [arm["probe"]["visible"] for arm in arms(workdir).values()] == ["", ""]


def test_slots_default_to_the_parents_visible_devices(
    workdir: Path, probe_env: dict[str, str]
) -> None:
    env = {**probe_env, "CUDA_VISIBLE_DEVICES": "7"}
    done = sweep(
        workdir,
        env,
        "hydra/launcher=evsys_gpus",
        "hydra.launcher.gpu_backends=[mock]",
        "algorithm.params.sleep_s=0.2",
        "seed=1,2",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    probes = [arm["probe"] for arm in arms(workdir).values()]
    assert [p["visible"] for p in probes] == ["7", "7"]
    first, second = sorted(probes, key=lambda p: p["start"])
    assert first["end"] <= second["start"]  # one slot: one arm at a time


def test_a_killed_arm_fails_alone(workdir: Path, probe_env: dict[str, str]) -> None:
    done = sweep(
        workdir,
        probe_env,
        "hydra/launcher=evsys_gpus",
        *GPU_MOCK,
        "algorithm.params.kill_seed=3",
        "algorithm.params.sleep_s=0.3",
        "seed=1,2,3,4",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    found = arms(workdir)
    assert {name: arm["status"] for name, arm in found.items()} == {
        "seed1": "completed",
        "seed2": "completed",
        "seed3": "failed",
        "seed4": "completed",
    }
    (root,) = (workdir / "outputs" / "sweeps").glob("*/*")
    record = json.loads((root / "seed3" / "run_result.json").read_text())
    assert "signal SIGKILL" in record["error"], record["error"]


def test_too_few_slots_fail_before_any_arm_starts(workdir: Path, probe_env: dict[str, str]) -> None:
    done = sweep(
        workdir,
        probe_env,
        "hydra/launcher=evsys_gpus",
        *GPU_MOCK,
        "hydra.launcher.gpus_per_arm=3",
        "seed=1,2",
    )
    # refused by the sweep's pre-flight: exit 2, nothing launched, no directory
    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert "need 3 GPU(s) each" in output and "only 2 GPU slot(s) exist" in output, output
    assert "started" not in output
    assert not (workdir / "outputs").exists()
