"""A Hydra launcher that runs each arm in its own process, each GPU arm on GPUs of its own.

``hydra/launcher=evsys_gpus`` (or the ``gpus`` preset). Every arm starts in a fresh interpreter
("spawn": nothing CUDA-related leaks from the parent), at most ``max_parallel`` at once. An arm
whose backend trains on a GPU waits for ``gpus_per_arm`` free slots and starts with
``CUDA_VISIBLE_DEVICES`` set to exactly those; the slots return to the pool when its process ends,
however it ends. Other arms (mock, tinker, or ``backend.params.device=cpu``) start with
``CUDA_VISIBLE_DEVICES=""`` and take no slot. submitit's local executor, by contrast, gives every
arm the same GPUs (Hydra issue #2757). Each arm also gets ``EVSYS_ARM_CPUS``, this machine's CPUs
divided by the arms that run at once, which sizes its torch threads (:mod:`evsys.cpus`).

An arm whose process dies (killed, segfault, out of memory) comes back as a failed ``JobReturn``
that says its exit code; the evsys sweeper records it ``failed``.
"""

# No `from __future__ import annotations` here: OmegaConf reads the dataclass's annotations as
# real types (and Optional[...], not `X | None`, which OmegaConf 2.3 does not understand).
import logging
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, List, Optional  # noqa: UP035

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.evsys_plugins.arm_processes import (
    Arm,
    ChildJob,
    RunningArm,
    environment,
    run_arm_in_child,
    wait_for_ends,
)

log = logging.getLogger(__name__)

VISIBLE = "CUDA_VISIBLE_DEVICES"
ARM_CPUS = "EVSYS_ARM_CPUS"  # evsys.cpus.ARM_CPUS_ENV, without importing evsys at plugin scan
STOP_GRACE_S = 30.0  # how long an interrupted arm may take to record itself before SIGKILL


@dataclass
class EvsysGpuLauncherConf:
    _target_: str = "hydra_plugins.evsys_plugins.gpu_launcher.EvsysGpuLauncher"
    # GPU slots, as CUDA_VISIBLE_DEVICES entries (indices or UUIDs). None: the devices in this
    # process's CUDA_VISIBLE_DEVICES when set, else every GPU `nvidia-smi -L` lists, else none.
    gpus: Optional[List[str]] = None  # noqa: UP006, UP045
    gpus_per_arm: int = 1
    # Arms running at once, GPU or not. None: the number of GPU slots (at least 1).
    max_parallel: Optional[int] = None  # noqa: UP045
    # An arm needs GPUs when its backend.kind is one of these and backend.params.device != cpu.
    gpu_backends: List[str] = field(default_factory=lambda: ["local"])  # noqa: UP006


ConfigStore.instance().store(
    group="hydra/launcher", name="evsys_gpus", node=EvsysGpuLauncherConf, provider="evsys"
)


class EvsysGpuLauncher(Launcher):
    def __init__(
        self,
        gpus: Optional[Sequence[str]] = None,  # noqa: UP045
        gpus_per_arm: int = 1,
        max_parallel: Optional[int] = None,  # noqa: UP045
        gpu_backends: Sequence[str] = ("local",),
    ) -> None:
        self.gpus = None if gpus is None else [str(g) for g in gpus]
        self.gpus_per_arm = gpus_per_arm
        self.max_parallel = max_parallel
        self.gpu_backends = [str(b) for b in gpu_backends]
        self.config: Optional[DictConfig] = None  # noqa: UP045
        self.hydra_context: Optional[HydraContext] = None  # noqa: UP045
        self.task_function: Optional[TaskFunction] = None  # noqa: UP045
        self._arm_cpus = 1  # EVSYS_ARM_CPUS of each arm, set for every launch

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        # Imported here: Hydra imports every plugin module at start-up, for any app.
        from pathlib import Path

        from hydra.core.utils import configure_log, setup_globals

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        slots, where = self._slots()
        arms = [self._compose(i, list(o), initial_job_idx + i) for i, o in enumerate(job_overrides)]
        self._check([a.label for a in arms if a.needs_gpu], slots, where)  # before anything starts
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        max_parallel = self.max_parallel or max(1, len(slots))
        log.info(
            "Launching %d arms, %d at a time, GPU slots %s (%s)",
            len(arms), max_parallel, slots, where,
        )  # fmt: skip
        return self._run_all(arms, slots, max_parallel)

    # -- planning -----------------------------------------------------------------------------

    def _slots(self) -> tuple[List[str], str]:  # noqa: UP006
        if self.gpus is not None:
            return list(self.gpus), "hydra.launcher.gpus"
        visible = os.environ.get(VISIBLE)
        if visible is not None:
            return [d.strip() for d in visible.split(",") if d.strip()], f"{VISIBLE}={visible!r}"
        count = _nvidia_smi_gpu_count()
        return [str(i) for i in range(count)], f"nvidia-smi -L lists {count}"

    def _compose(self, position: int, overrides: List[str], job_num: int) -> Arm:  # noqa: UP006
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            config.hydra.job.id = job_num
            config.hydra.job.num = job_num
        backend = OmegaConf.to_container(config.backend) if "backend" in config else {}
        needs_gpu = self._needs_gpu(backend)
        return Arm(position=position, overrides=overrides, config=config, needs_gpu=needs_gpu)

    def _needs_gpu(self, backend: Any) -> bool:
        """An arm trains on GPUs when its backend is a GPU backend not told to use the CPU."""
        params = backend.get("params") or {}
        return backend.get("kind") in self.gpu_backends and params.get("device") != "cpu"

    def check_arms(self, arms: Sequence[Any]) -> None:
        """Pre-flight, called by the evsys sweeper with ``(name, resolved config)`` of every arm
        before any arm directory exists: too few GPU slots refuse the sweep there."""
        slots, where = self._slots()
        needing = [name for name, config in arms if self._needs_gpu(config.get("backend") or {})]
        self._check(needing, slots, where)

    def settings_problems(self) -> List[Any]:  # noqa: UP006
        """What is wrong with the launcher's own values (evsys's pre-flight asks, in every mode)."""
        from evsys.errors import Problem

        def problem(key: str, value: Any, message: str, expected: str) -> Problem:
            message = f"{message} (got {value!r})"
            return Problem(f"hydra.launcher.{key}", message, value=value, expected=expected)

        problems = []
        if self.gpus_per_arm < 1:
            problems.append(
                problem("gpus_per_arm", self.gpus_per_arm, "must be at least 1", ">= 1")
            )
        if self.max_parallel is not None and self.max_parallel < 1:
            problems.append(
                problem("max_parallel", self.max_parallel, "must be at least 1", "null or >= 1")
            )
        if self.gpus is not None and len(set(self.gpus)) < len(self.gpus):
            problems.append(problem("gpus", self.gpus, "names a GPU twice", "distinct entries"))
        return problems

    def _check(self, gpu_arms: List[str], slots: List[str], where: str) -> None:  # noqa: UP006
        from evsys.errors import ConfigError, Problem

        problems = self.settings_problems()
        if self.gpus is None and len(set(slots)) < len(slots):
            message = f"names a GPU twice (got {slots!r})"
            problems.append(
                Problem("hydra.launcher.gpus", message, value=slots, expected="distinct entries")
            )
        if gpu_arms and self.gpus_per_arm > len(slots):
            names = ", ".join(gpu_arms[:5]) + (", …" if len(gpu_arms) > 5 else "")
            message = (
                f"{len(gpu_arms)} arms ({names}) need {self.gpus_per_arm} GPU(s) each "
                f"(backend.kind in gpu_backends={self.gpu_backends}, backend.params.device "
                f"!= cpu), but only {len(slots)} GPU slot(s) exist ({where}). Set "
                "hydra.launcher.gpus=[0,1,…], lower hydra.launcher.gpus_per_arm, or run them "
                f"on CPU with backend.params.device=cpu (got {slots!r})"
            )
            problems.append(
                Problem(
                    "hydra.launcher.gpus",
                    message,
                    value=slots,
                    expected=f">= {self.gpus_per_arm} slots",
                )
            )
        if problems:
            raise ConfigError(problems, header="hydra/launcher=evsys_gpus: no arm was launched.")

    # -- running ------------------------------------------------------------------------------

    def _run_all(
        self,
        arms: List[Arm],  # noqa: UP006
        slots: List[str],  # noqa: UP006
        max_parallel: int,
    ) -> List[JobReturn]:  # noqa: UP006
        import multiprocessing

        from hydra.core.singleton import Singleton

        from evsys.cpus import launcher_share

        context = multiprocessing.get_context("spawn")
        # OmegaConf's resolvers are closures, which pickle cannot carry (submitit uses
        # cloudpickle); the child registers Hydra's and evsys's again.
        state = {**Singleton.get_state(), "omegaconf_resolvers": {}}
        free, waiting, running = list(slots), list(arms), []
        # Each arm's torch threads: the CPUs split among the arms that run at once.
        self._arm_cpus = launcher_share(min(max_parallel, len(arms)))
        results: dict = {}
        try:
            while waiting or running:
                # Start every waiting arm that fits, in order; a CPU arm need not wait behind a
                # GPU arm (all GPU arms need the same number of slots, so none starves).
                for arm in list(waiting):
                    need = self.gpus_per_arm if arm.needs_gpu else 0
                    if len(running) >= max_parallel:
                        break
                    if need <= len(free):
                        taken, free = free[:need], free[need:]
                        running.append(self._start(context, arm, taken, state))
                        waiting.remove(arm)
                for done in wait_for_ends(running):
                    running.remove(done)
                    free = [s for s in slots if s in free or s in done.slots]
                    results[done.arm.position] = done.finish()
        finally:
            # The parent is being interrupted: take the arms with it. SIGTERM first, so that
            # each records itself cancelled (with its duration and metrics), then SIGKILL.
            for still in running:
                still.process.terminate()
            for still in running:
                still.process.join(STOP_GRACE_S)
                if still.process.exitcode is None:
                    still.process.kill()
                    still.process.join()
        return [results[arm.position] for arm in arms]

    def _start(self, context: Any, arm: Arm, slots: List[str], state: Any) -> RunningArm:  # noqa: UP006
        job = ChildJob(
            hydra_context=self.hydra_context,  # type: ignore[arg-type]
            task_function=self.task_function,  # type: ignore[arg-type]
            config=arm.config,
            singleton_state=state,
        )
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=run_arm_in_child, args=(pickle.dumps(job), sender))
        # Set for the exec itself, so that the variable is in place before the child's first
        # import, whatever that import initialises.
        with (
            environment(VISIBLE, ",".join(slots)),
            environment(ARM_CPUS, str(self._arm_cpus)),
        ):
            process.start()
        sender.close()  # the child holds its own copy; closing ours lets a dead child read as EOF
        log.info(
            "%s: started, %s=%r, %s=%d (pid %d)",
            arm.label, VISIBLE, ",".join(slots), ARM_CPUS, self._arm_cpus, process.pid,
        )  # fmt: skip
        return RunningArm(arm=arm, process=process, conn=receiver, slots=slots)


def _nvidia_smi_gpu_count() -> int:
    import subprocess

    try:
        listed = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return 0  # no driver, no GPU
    return sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU "))
