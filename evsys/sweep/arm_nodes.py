"""Whether every arm's node count agrees with where it is launched, before any arm starts.

An arm trains across several nodes only as one multi-node Slurm job: ``backend.params.num_nodes``
says how many nodes its ranks span, ``hydra.launcher.nodes`` (or the arm's own
``resources.nodes``) how many the job asks for. The two must agree; a launcher that runs arms on
this machine (basic, gpus, local_processes) cannot run such an arm at all, and neither can a
single run outside a Slurm job of that many nodes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from evsys.errors import ConfigError, Problem

NUM_NODES = "backend.params.num_nodes"
LAUNCHER_NODES = "hydra.launcher.nodes"


def launcher_nodes(launcher: Any) -> int | None:
    """The nodes a launcher gives each arm's job, or None when it runs arms on this machine.
    A launcher that submits multi-node jobs says so with ``submits_multi_node_jobs``."""
    if not getattr(launcher, "submits_multi_node_jobs", False):
        return None
    return int((getattr(launcher, "params", None) or {}).get("nodes") or 1)


def arm_num_nodes(resolved: dict[str, Any]) -> int:
    params = (resolved.get("backend") or {}).get("params") or {}
    value = params.get("num_nodes", 1)
    return value if isinstance(value, int) else 1


def arm_job_nodes(resolved: dict[str, Any], default: int) -> tuple[int, str]:
    """The nodes the arm's job asks for and the key that set them."""
    nodes = (resolved.get("resources") or {}).get("nodes")
    return (nodes, "resources.nodes") if isinstance(nodes, int) else (default, LAUNCHER_NODES)


def check_arm_nodes(launcher: Any, arms: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Raise one ConfigError naming every arm whose nodes do not agree (see the module)."""
    per_launcher = launcher_nodes(launcher)
    mismatched: dict[tuple[int, int, str], list[str]] = {}
    for name, resolved in arms:
        num_nodes = arm_num_nodes(resolved)
        if per_launcher is None:
            job_nodes, key = arm_job_nodes(resolved, 1)
            if num_nodes > 1 or job_nodes > 1:
                mismatched.setdefault((num_nodes, job_nodes, "local"), []).append(name)
            continue
        job_nodes, key = arm_job_nodes(resolved, per_launcher)
        if job_nodes != num_nodes:
            mismatched.setdefault((num_nodes, job_nodes, key), []).append(name)
    problems = [_problem(*found, names) for found, names in mismatched.items()]
    if problems:
        raise ConfigError(problems, header="the arms' nodes do not agree: no arm was launched.")


def single_run_node_problems(resolved: dict[str, Any]) -> list[Problem]:
    """A single run (no --multirun) spans nodes only inside a Slurm job of that many nodes."""
    num_nodes = arm_num_nodes(resolved)
    if num_nodes <= 1 or os.environ.get("SLURM_JOB_NUM_NODES") == str(num_nodes):
        return []
    return [_problem(num_nodes, 1, "local", ["this run"])]


def _problem(num_nodes: int, job_nodes: int, key: str, names: list[str]) -> Problem:
    arms = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
    if key == "local":
        asked = f"{NUM_NODES}={num_nodes}" if num_nodes > 1 else f"resources.nodes={job_nodes}"
        message = (
            f"{asked} asks for an arm across several nodes, and it would run on this machine "
            f"({arms}): run it with --multirun hydra/launcher=slurm, {LAUNCHER_NODES}=N (or "
            f"resources.nodes=N) and {NUM_NODES}=N, or leave both at 1"
        )
        expected = f"{NUM_NODES}=1 here"
    else:
        message = (
            f"{NUM_NODES}={num_nodes} but the arm's job has {job_nodes} node(s) from {key} "
            f"({arms}): an arm on N nodes needs {NUM_NODES}=N and {LAUNCHER_NODES}=N "
            "(or resources.nodes=N)"
        )
        expected = f"{NUM_NODES} == {key} ({job_nodes})"
    return Problem(path=NUM_NODES, message=message, value=num_nodes, expected=expected)
