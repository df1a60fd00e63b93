"""An arm across nodes: its node counts must agree before anything runs (exit 2, both keys
named), and an arm's own resources are a validated part of its config."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_evsys
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from evsys.arm_resources import LAUNCHER_KEYS, ArmResources
from evsys.errors import ConfigError
from evsys.sweep.arm_nodes import check_arm_nodes

SLURM = "hydra/launcher=slurm_single_node"


def _arm(num_nodes: int | None, resources_nodes: int | None) -> dict:
    params = {} if num_nodes is None else {"num_nodes": num_nodes}
    return {"backend": {"kind": "local", "params": params}, "resources": {"nodes": resources_nodes}}


def _slurm(nodes: int) -> SimpleNamespace:
    """The two things check_arm_nodes reads of the Slurm launcher (evsys_slurm has both)."""
    return SimpleNamespace(submits_multi_node_jobs=True, params={"nodes": nodes})


small = st.integers(min_value=1, max_value=4)


@settings(max_examples=200, deadline=None)
@given(
    launcher_nodes=st.none() | small,
    arms=st.lists(st.tuples(st.none() | small, st.none() | small), min_size=1, max_size=4),
)
def test_an_arm_runs_only_where_its_nodes_agree(
    launcher_nodes: int | None, arms: list[tuple[int | None, int | None]]
) -> None:
    launcher = None if launcher_nodes is None else _slurm(launcher_nodes)
    named = [(f"arm{i}", _arm(n, r)) for i, (n, r) in enumerate(arms)]

    def fits(num_nodes: int | None, resources_nodes: int | None) -> bool:
        wanted, job = num_nodes or 1, resources_nodes or (launcher_nodes or 1)
        if launcher_nodes is None:  # a launcher that runs arms on this machine
            return wanted == 1 and job == 1
        return wanted == job

    bad = [name for name, (n, r) in zip([a for a, _ in named], arms, strict=True) if not fits(n, r)]
    if not bad:
        check_arm_nodes(launcher, named)
        return
    with pytest.raises(ConfigError) as caught:
        check_arm_nodes(launcher, named)
    text = "\n".join(p.message for p in caught.value.problems)
    assert {p.path for p in caught.value.problems} == {"backend.params.num_nodes"}
    assert "hydra.launcher.nodes" in text
    for name in bad:
        assert name in text  # every arm that cannot run is named


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(LAUNCHER_KEYS), st.integers(-3, 300)))
def test_resources_are_validated_and_only_the_set_ones_reach_the_launcher(values: dict) -> None:
    floor = {"gpus_per_node": 0, "timeout_min": 3}
    valid = all(v >= floor.get(k, 1) for k, v in values.items())
    if not valid:
        with pytest.raises(ValidationError):
            ArmResources(**values)
        return
    assert ArmResources(**values).launcher_values() == values


def test_num_nodes_on_a_launcher_of_this_machine_is_exit_2(workdir: Path) -> None:
    done = run_evsys(
        "--multirun", "backend=local", "backend.params.num_nodes=2", "seed=1,2", cwd=workdir
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "backend.params.num_nodes=2" in done.stderr and "hydra.launcher.nodes" in done.stderr
    assert not (workdir / "outputs").exists() or not list(
        (workdir / "outputs").rglob("run_result.json")
    )


def test_num_nodes_in_a_single_run_is_exit_2(workdir: Path) -> None:
    done = run_evsys("backend=local", "backend.params.num_nodes=2", cwd=workdir)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "backend.params.num_nodes=2" in done.stderr and "hydra.launcher.nodes" in done.stderr


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["hydra.launcher.nodes=2"], "from hydra.launcher.nodes"),  # nodes without num_nodes
        (["backend.params.num_nodes=2"], "from hydra.launcher.nodes"),  # num_nodes without nodes
        (
            ["hydra.launcher.nodes=2", "resources.nodes=1,3", "backend.params.num_nodes=2"],
            "from resources.nodes",
        ),
    ],
)
def test_mismatched_nodes_on_slurm_are_exit_2_before_any_job(
    workdir: Path, overrides: list[str], named: str
) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    done = run_evsys("--multirun", SLURM, "backend=local", *overrides, cwd=workdir)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "backend.params.num_nodes" in done.stderr and "hydra.launcher.nodes" in done.stderr
    assert named in done.stderr
    assert not list(workdir.rglob(".submitit")), "a job was submitted"


def test_bad_resources_are_exit_2_naming_the_key(workdir: Path) -> None:
    done = run_evsys("resources.mem_gb=0", "resources.nodez=2", cwd=workdir)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "resources.mem_gb" in done.stderr and "resources.nodez" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_arm_across_nodes_outside_a_slurm_job_of_as_many_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from evsys.backends.local.slurm_nodes import rendezvous_port, srun_command
    from evsys.errors import BackendError

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(BackendError, match="needs a Slurm job of 2 nodes and this arm runs in no"):
        srun_command(2, 1, tmp_path, tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "3")
    with pytest.raises(BackendError, match="runs in a Slurm job of 3 node"):
        srun_command(2, 1, tmp_path, tmp_path)
    # Two jobs' arms that share a node meet at ports of their own.
    assert len({rendezvous_port(str(job)) for job in range(1000, 1100)}) == 100
