"""What an :class:`~evsys.experiment.Experiment` returns: one result per arm, and the verdict.

Built from the files the run left (``run_result.json`` per arm, the sweep's aggregate), so the
result in memory says exactly what ``evsys results`` prints and ``sweep_result.json`` holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evsys.config import ExperimentConfig
from evsys.run.record import RUN_RESULT
from evsys.sweep.aggregate import COMPLETED, ArmRow, GroupRow, SweepSummary


@dataclass
class ArmResult:
    """One arm: what it was (name, overrides, config) and how it ended."""

    name: str
    overrides: list[str]
    config: ExperimentConfig | None
    status: str
    """``completed``, ``failed``, ``cancelled``, ``timeout``, or ``missing`` (no finished record)."""
    metrics: dict[str, float]
    run_dir: Path | None
    error: str | None
    seed: int | None
    group_id: str
    """Arms equal but for the seed share it: one run group, replicated over seeds."""
    record: dict[str, Any] | None = None
    """The arm's ``run_result.json``."""

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED


@dataclass
class ExperimentResult:
    """The arms, the run groups across seeds, the best arm and the conclusion."""

    name: str
    output_dir: Path
    """The run directory of a single run, the sweep directory of a sweep."""
    hypothesis: str
    success_metric: dict[str, str] | None
    """``{"name": ..., "direction": "max" | "min"}``; None: arms are not ranked."""
    arms: list[ArmResult]
    groups: list[GroupRow]
    best_arm: ArmResult | None
    best_value: float | None
    conclusion: str
    summary: SweepSummary = field(repr=False)
    """The aggregate the conclusion was drawn from (``sweep_result.json`` of a sweep)."""
    deployment: dict[str, Any] | None = None
    """What the config's ``deploy`` section shipped (the single run, or the sweep's best arm):
    the entry recorded under ``deployments`` in its ``run_result.json``; None when nothing was."""
    deploy_error: str | None = None
    """Why that deploy failed, in one line; the arms' results stand as recorded."""

    @property
    def status(self) -> str:
        """``completed`` when any arm completed (one failed arm does not fail an experiment)."""
        return COMPLETED if any(arm.completed for arm in self.arms) else "failed"

    @property
    def failed(self) -> list[ArmResult]:
        return [arm for arm in self.arms if not arm.completed]

    def arm(self, name: str) -> ArmResult:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"no arm named {name!r}; arms: {[a.name for a in self.arms]}")


def experiment_result(
    summary: SweepSummary,
    configs: dict[str, ExperimentConfig | None],
    *,
    deployment: dict[str, Any] | None = None,
    deploy_error: str | None = None,
) -> ExperimentResult:
    """The result of the arms ``summary`` aggregated; ``configs`` are the arms' validated configs,
    ``deployment`` or ``deploy_error`` what the config's ``deploy`` section led to."""
    arms = [_arm_result(row, configs.get(row.name)) for row in summary.arms]
    by_name = {arm.name: arm for arm in arms}
    return ExperimentResult(
        name=summary.name,
        output_dir=summary.sweep_dir,
        hypothesis=summary.hypothesis,
        success_metric=summary.success_metric,
        arms=arms,
        groups=summary.groups,
        best_arm=by_name.get(summary.best_arm) if summary.best_arm else None,
        best_value=summary.best_value,
        conclusion=summary.conclusion,
        summary=summary,
        deployment=deployment,
        deploy_error=deploy_error,
    )


def _arm_result(row: ArmRow, config: ExperimentConfig | None) -> ArmResult:
    run_dir = Path(row.run_dir) if row.run_dir else None
    return ArmResult(
        name=row.name,
        overrides=list(row.overrides),
        config=config,
        status=row.status,
        metrics=dict(row.metrics),
        run_dir=run_dir,
        error=row.error,
        seed=row.seed,
        group_id=row.group_id,
        record=_read_record(run_dir) if run_dir else None,
    )


def _read_record(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / RUN_RESULT).read_text())
    except (OSError, ValueError):
        return None
