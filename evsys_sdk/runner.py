"""The reference's ``run_experiment``: every run of a reference config, as ``RunResult``s.

evsys runs the file (:func:`evsys.reference_yaml.run_experiment`: every arm validated first,
each failure kept to its arm, the records and sweep aggregate written) and returns an
``ExperimentResult``; the reference returns one ``RunResult`` per run, which this builds from
each arm's ``run_result.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evsys.experiment.results import ArmResult
from evsys.protocols import RunResult
from evsys.reference_yaml import run_experiment as run_reference
from evsys.reference_yaml.source import ReferenceConfig
from evsys_sdk.yaml_files import load_yaml


def run_experiment(
    cfg_or_path: ReferenceConfig | str | Path,
    output_dir: str | Path | None = None,
    **options: Any,
) -> list[RunResult]:
    """Run a reference config (or the YAML file at a path), one result per run in order.

    ``output_dir``: the run or sweep directory (None: under the config's ``output_dir``);
    ``options``: see :class:`evsys.Experiment` (``train_fn``, ``inference_factory``, ``store``).
    A config that cannot run raises ConfigError before anything runs."""
    config = cfg_or_path if isinstance(cfg_or_path, ReferenceConfig) else load_yaml(cfg_or_path)
    result = run_reference(config, output_dir, **options)
    return [run_result(arm) for arm in result.arms]


def run_result(arm: ArmResult) -> RunResult:
    """The arm's ``RunResult`` as its record holds it; ``extras`` also names the arm and its
    directory (``name``, ``run_dir``)."""
    record = arm.record or {}
    extras = dict(record.get("extras") or {})
    extras.update(name=arm.name, run_dir=str(arm.run_dir) if arm.run_dir else None)
    return RunResult(
        run_id=str(record.get("run_id") or arm.name),
        status=arm.status,  # type: ignore[arg-type]  # "missing": no record was finished
        metrics=dict(arm.metrics),
        artifacts=dict(record.get("artifacts") or {}),
        error=arm.error,
        extras=extras,
    )
