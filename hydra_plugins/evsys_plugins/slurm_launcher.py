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
            import submitit  # lazy: plugin discovery must stay fast

            assert self.config is not None
            init_keys = {"submitit_folder", "max_num_timeout"}
            init_params: Dict[str, Any] = {"folder": self.params["submitit_folder"]}
            if "max_num_timeout" in self.params:
                init_params[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
            executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
            base = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(
                **{
                    key if key in base else f"{self._EXECUTOR}_{key}": value
                    for key, value in self.params.items()
                    if key not in init_keys
                }
            )
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
            return executor.map_array(self, *zip(*job_params, strict=True))

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


def _ended(
    job: Any, overrides: Sequence[str], position: int, ended_without_result: Dict[int, float]
) -> Optional[JobReturn]:
    """The arm's JobReturn once it has ended, else None."""
    if job.paths.result_pickle.exists():
        try:
            return job.results()[0]
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
