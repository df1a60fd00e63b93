"""How many CPUs an arm may use, and so how many threads torch should run.

torch starts one intra-op thread per core of the machine, whatever else runs on it. Arms that run
side by side (``hydra/launcher=gpus``, ``local_processes``, several Slurm tasks on one node) then
run several times more threads than there are cores, and OpenMP threads that wait on each other
at every operation slow down ten-fold. An arm's share is the smallest of:

- the CPUs the process may run on (``os.sched_getaffinity``: cgroups, ``taskset``, Slurm binding);
- ``SLURM_CPUS_PER_TASK`` (Slurm without CPU binding still says what the task was given);
- ``EVSYS_ARM_CPUS``, set by evsys's launchers for each arm they start: the machine's CPUs
  divided among the arms that run at once.

An explicit choice wins over all of them: ``backend.params.num_threads``, else
``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

ARM_CPUS_ENV = "EVSYS_ARM_CPUS"

_applied: dict[str, Any] = {}  # what this process set torch to, for the run record


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def arm_cpus() -> tuple[int, str]:
    """``(cpus, where that number comes from)`` for the arm in this process."""
    limits = [(usable_cpus(), "CPU affinity")]
    for name in ("SLURM_CPUS_PER_TASK", ARM_CPUS_ENV):
        value = _positive_int(os.environ.get(name))
        if value is not None:
            limits.append((value, name))
    return min(limits, key=lambda limit: limit[0])


def launcher_share(arms_at_once: int, cpus_per_arm: int | None = None) -> int:
    """``EVSYS_ARM_CPUS`` for each of ``arms_at_once`` arms started from this process: the
    launcher's own ``cpus_per_arm`` when it has one, else an even split of the usable CPUs."""
    if cpus_per_arm:
        return cpus_per_arm
    return max(1, usable_cpus() // max(1, arms_at_once))


def torch_threads(explicit: int | None = None, ranks: int = 1) -> tuple[int, str]:
    """``(threads, why)`` for torch in one of ``ranks`` processes sharing the arm's CPUs."""
    if explicit is not None:
        return explicit, "backend.params.num_threads"
    omp = _positive_int(os.environ.get("OMP_NUM_THREADS"))
    if omp is not None:
        return omp, "OMP_NUM_THREADS"
    cpus, source = arm_cpus()
    if ranks > 1:
        return max(1, cpus // ranks), f"{source} ({cpus}) / {ranks} ranks"
    return cpus, source


def note_torch_threads(threads: int, source: str) -> None:
    _applied.update(torch_threads=threads, threads_from=source)


def note_ranks(world_size: int, nodes: int) -> None:
    """The arm trains in ``world_size`` ranks over ``nodes`` nodes (a data-parallel arm)."""
    _applied.update(world_size=world_size, nodes=nodes)


def runtime_state() -> dict[str, Any]:
    """The ``runtime`` entry of a run record: the arm's CPUs and, once torch is loaded, its
    intra-op threads and why that many; for a data-parallel arm its ranks and nodes (read once:
    the next arm of this process starts without them)."""
    cpus, source = arm_cpus()
    state: dict[str, Any] = {"cpus": cpus, "cpus_from": source}
    if "world_size" in _applied:
        state |= {"world_size": _applied.pop("world_size"), "nodes": _applied.pop("nodes")}
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        threads = torch.get_num_threads()
        noted = _applied.get("torch_threads") == threads
        state |= {
            "torch_threads": threads,
            "threads_from": _applied["threads_from"] if noted else "torch's default",
        }
    return state


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number > 0 else None
