"""Run a sweep's arms in this process, one after the other, as Hydra's basic launcher does.

The sweeper hands a launcher each arm as its overrides plus ``hydra.sweep.subdir=<arm name>``;
Hydra's basic launcher then composes the arm again, writes ``.hydra/`` and calls the task
function (:func:`evsys.app.run_task`, which runs :func:`evsys.run.runner.run_arm`). This launcher
does the same with the arm already validated by the sweep's pre-flight, and with the
:class:`~evsys.run.dependencies.ArmDependencies` of an :class:`~evsys.experiment.Experiment`, which
a launcher in another process could not be given.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from evsys.files import write_text_atomically
from evsys.interrupts import reraise_if_interruption
from evsys.run.dependencies import ArmDependencies
from evsys.run.record import redact, redact_override
from evsys.run.runner import ArmOutcome, run_arm
from evsys.sweep.plan import Arm

log = logging.getLogger(__name__)

SUBDIR = "hydra.sweep.subdir="
TARGET = f"{__name__}.InProcessLauncher"


class InProcessLauncher:
    """Launches arms known by name, in ``sweep_dir/<name>``; returns each arm's outcome (or the
    exception that escaped it, which the sweeper records as the arm's failure)."""

    def __init__(self, sweep_dir: Path, arms: list[Arm], dependencies: ArmDependencies):
        self.sweep_dir = sweep_dir
        self.arms = {arm.name: arm for arm in arms}
        self.dependencies = dependencies

    def launch(
        self, job_overrides: list[list[str]], initial_job_idx: int
    ) -> list[ArmOutcome | Exception]:
        returns: list[ArmOutcome | Exception] = []
        for overrides in job_overrides:
            arm = self.arms[_subdir(overrides)]
            try:
                returns.append(self.run(arm))
            except Exception as exc:  # isolated: the next arm runs all the same
                reraise_if_interruption(exc)  # but a timeout (submitit's) stops them all
                log.error("arm %s raised: %s", arm.name, exc)
                returns.append(exc)
        return returns

    def run(self, arm: Arm) -> ArmOutcome:
        assert arm.config is not None  # the sweep launches only validated arms
        arm_dir = self.sweep_dir / arm.name
        write_hydra_files(arm_dir, arm.resolved, arm.overrides)
        return run_arm(arm.config, arm_dir, overrides=arm.overrides, dependencies=self.dependencies)


def write_hydra_files(run_dir: Path, config: dict, overrides: list[str]) -> None:
    """``.hydra/config.yaml`` and ``.hydra/overrides.yaml``, as a Hydra job leaves them: what was
    composed (resolved) and from which overrides, secrets redacted (``evsys results`` reads the
    overrides of arms that have no result yet)."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    safe_config, safe_overrides = redact(config), [redact_override(o) for o in overrides]
    write_text_atomically(hydra_dir / "config.yaml", OmegaConf.to_yaml(safe_config))
    write_text_atomically(hydra_dir / "overrides.yaml", OmegaConf.to_yaml(safe_overrides))


def _subdir(overrides: list[str]) -> str:
    return next(o.removeprefix(SUBDIR) for o in overrides if o.startswith(SUBDIR))
