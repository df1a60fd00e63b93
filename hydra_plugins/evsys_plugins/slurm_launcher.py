"""Slurm job arrays through submitit, with each arm's end noticed within seconds.

``hydra/launcher=evsys_slurm`` (the ``slurm`` presets extend it). It submits exactly as
hydra-submitit-launcher's ``submitit_slurm`` does; only the wait differs. submitit's launcher waits
on the arms one after another and polls ``sacct`` ever more rarely (up to every 10 min), so an arm
that was cancelled or killed is noticed late, and its exception aborts the wait for the arms still
running. Here one ``sacct`` call per second covers every arm, and an arm that ended without a
result (cancelled, timed out, killed) is reported failed a few seconds after Slurm says so, while
the others run on. The evsys sweeper records each arm as soon as it ends (``arm_ended``).
"""

# No `from __future__ import annotations` here: OmegaConf reads the dataclass's annotations.
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence  # noqa: UP035

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf

try:  # the slurm extra: pip install 'evsys[slurm]'
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
except ImportError:
    SlurmLauncher = None

log = logging.getLogger(__name__)

# How long a task Slurm reports ended may take to show its result file (shared filesystems lag).
RESULT_GRACE_S = 3.0
# Below this, a job would be signalled before it started (submitit warns 120 s ahead).
MIN_TIMEOUT_MIN = 3

if SlurmLauncher is not None:

    @dataclass
    class EvsysSlurmConf(SlurmQueueConf):
        _target_: str = "hydra_plugins.evsys_plugins.slurm_launcher.EvsysSlurmLauncher"
        poll_interval_s: float = 1.0  # one sacct call per interval for the whole sweep

    ConfigStore.instance().store(
        group="hydra/launcher", name="evsys_slurm", node=EvsysSlurmConf, provider="evsys"
    )

    class EvsysSlurmLauncher(SlurmLauncher):
        # An arm of several nodes runs here as one job of that many nodes (see evsys.sweep.arm_nodes).
        submits_multi_node_jobs = True

        def __init__(self, **params: Any) -> None:
            self.poll_interval_s = float(params.pop("poll_interval_s", 1.0))
            # Called with (position in this launch, JobReturn) as each arm ends; set by the sweeper.
            self.arm_ended: Optional[Callable[[int, JobReturn], None]] = None
            super().__init__(**params)

        def settings_problems(self) -> List[Any]:
            """What is wrong with the launcher's values (evsys's pre-flight asks, in every mode)."""
            from evsys.errors import Problem

            problems = []
            timeout = self.params.get("timeout_min")
            if isinstance(timeout, int) and timeout < MIN_TIMEOUT_MIN:
                problems.append(
                    Problem(
                        path="hydra.launcher.timeout_min",
                        message="too short: submitit signals a job 120 s before its time limit",
                        value=timeout,
                        expected=f">= {MIN_TIMEOUT_MIN}",
                    )
                )
            for key in ("array_parallelism", "cpus_per_task", "tasks_per_node", "nodes"):
                value = self.params.get(key)
                if isinstance(value, int) and value < 1:
                    problems.append(
                        Problem(
                            path=f"hydra.launcher.{key}",
                            message="must be at least 1",
                            value=value,
                            expected=">= 1",
                        )
                    )
            return problems

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            jobs = self._submit(job_overrides, initial_job_idx)
            return self._wait(jobs, job_overrides)

        def _submit(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> List[Any]:
            """As hydra-submitit-launcher 1.2's ``BaseSubmititLauncher.launch``, without its wait."""

            assert self.config is not None
            init_keys = {"submitit_folder", "max_num_timeout"}
            init_params: Dict[str, Any] = {"folder": self.params["submitit_folder"]}
            if "max_num_timeout" in self.params:
                init_params[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            if "mode" in self.config.hydra.sweep:
                os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
            job_params = []
            for position, overrides in enumerate(job_overrides):
                idx = initial_job_idx + position
                log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
                job_params.append(
                    (
                        list(overrides),
                        "hydra.sweep.dir",
                        idx,
                        f"job_id_for_{idx}",
                        Singleton.get_state(),
                    )
                )
            # One job array per distinct set of the arms' own resources (resources.* in their
            # configs), each asking Slurm for what its arms need.
            jobs: List[Any] = [None] * len(job_params)
            for values, positions in group_by_resources(self._arm_resources, job_overrides):
                params = {**self.params, **values}
                arms = ", ".join(f"#{initial_job_idx + p}" for p in positions)
                log.info("\tarms %s: %s", arms, _sized(params))
                executor = _executor(self._EXECUTOR, params, init_params, init_keys)
                picked = [job_params[position] for position in positions]
                submitted = executor.map_array(self, *zip(*picked, strict=True))
                for position, job in zip(positions, submitted, strict=True):
                    jobs[position] = job
            return jobs

        def _arm_resources(self, overrides: Sequence[str]) -> Dict[str, Any]:
            """The launcher fields the arm's own ``resources`` set (its config, composed)."""
            from evsys.arm_resources import LAUNCHER_KEYS

            assert self.config is not None and self.hydra_context is not None
            loader = self.hydra_context.config_loader
            config = loader.load_sweep_config(self.config, list(overrides))
            node = OmegaConf.select(config, "resources", default=None)
            values = OmegaConf.to_container(node, resolve=True) if node is not None else {}
            assert isinstance(values, dict)
            return {key: values[key] for key in LAUNCHER_KEYS if values.get(key) is not None}

        def _wait(self, jobs: List[Any], job_overrides: Sequence[Sequence[str]]) -> List[JobReturn]:
            returns: Dict[int, JobReturn] = {}
            ended_without_result: Dict[int, float] = {}
            while len(returns) < len(jobs):
                jobs[0].watcher.update()  # one sacct call covers every job of the array
                for position, job in enumerate(jobs):
                    if position in returns:
                        continue
                    returned = _ended(job, job_overrides[position], position, ended_without_result)
                    if returned is not None:
                        returns[position] = returned
                        if self.arm_ended is not None:
                            self.arm_ended(position, returned)
                if len(returns) < len(jobs):
                    time.sleep(self.poll_interval_s)
            return [returns[position] for position in range(len(jobs))]


def group_by_resources(
    arm_resources: Callable[[Sequence[str]], Dict[str, Any]],
    job_overrides: Sequence[Sequence[str]],
) -> List[Any]:
    """``[(launcher values, [positions])]``: the arms that ask for the same resources, in the
    order their first arm comes."""
    groups: Dict[Any, List[int]] = {}
    for position, overrides in enumerate(job_overrides):
        groups.setdefault(tuple(sorted(arm_resources(overrides).items())), []).append(position)
    return [(dict(values), positions) for values, positions in groups.items()]


def _executor(
    cluster: str, params: Dict[str, Any], init_params: Dict[str, Any], init_keys: Any
) -> Any:
    """submitit's executor for ``params`` (the launcher's values, an arm group's on top)."""
    import submitit

    executor = submitit.AutoExecutor(cluster=cluster, **init_params)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{
            key if key in base else f"{cluster}_{key}": value
            for key, value in params.items()
            if key not in init_keys
        }
    )
    if int(params.get("nodes") or 1) > 1:
        # The arm's process runs once, on the first node, and starts its ranks on every node
        # itself (evsys.backends.local.slurm_nodes); submitit's srun would run it on each.
        executor.update_parameters(**{f"{cluster}_use_srun": False})
    return executor


def _sized(params: Dict[str, Any]) -> str:
    keys = ("nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min")
    return ", ".join(f"{key}={params.get(key)}" for key in keys)


def _ended(
    job: Any, overrides: Sequence[str], position: int, ended_without_result: Dict[int, float]
) -> Optional[JobReturn]:
    """The arm's JobReturn once it has ended, else None."""
    # A job of several tasks (a multi-node arm) has its result from task 0, where the arm ran.
    first = job.task(0) if job.num_tasks > 1 else job
    if first.paths.result_pickle.exists():
        try:
            return first.results()[0]
        except Exception as exc:  # the task raised, or submitit could not run it
            return _failed(overrides, exc)
    if not job.watcher.is_done(job.job_id, mode="cache"):
        return None
    first_seen = ended_without_result.setdefault(position, time.monotonic())
    if time.monotonic() - first_seen < RESULT_GRACE_S:
        return None
    state = job.watcher.get_state(job.job_id, mode="cache")
    from evsys.errors import BackendError

    error = BackendError(f"Slurm job {job.job_id} ended {state} without a result")
    log.error("%s", error)
    return _failed(overrides, error)


def _failed(overrides: Sequence[str], error: BaseException) -> JobReturn:
    return JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=error)
