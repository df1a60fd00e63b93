"""What a sweep found: a row per arm, run groups across seeds and the best arm.

Everything is read from disk, never from a process's memory, so the same summary comes out at
multirun end, after a crash, and while arms still run on a cluster: an arm without a finished
``run_result.json`` is ``missing``. A directory without ``sweep_plan.json`` (a plain Hydra multirun)
is read too: its arms are the subdirectories holding a ``run_result.json`` or a
``.hydra/overrides.yaml``, and the success metric is the first run's ``metadata.success_metric``.
An arm whose record says it started (``finished: false``, ``status: running``) is ``running``, or
``interrupted`` when that record names this machine and a process that no longer exists.
:func:`write_sweep_outputs` writes it down; :mod:`evsys.sweep.summary` draws summary.md and the plot.

Statistics: a group's metrics are the mean and the *sample* standard deviation
(``statistics.stdev``, n - 1) over its completed arms, because seeds are a sample of the runs one
could have made; with a single value the std is ``None`` (unknown), not 0.
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from evsys.errors import DataError
from evsys.files import write_json_atomically, write_text_atomically
from evsys.run.record import RUN_RESULT, SEED, config_hash, group_id
from evsys.sweep.conclusion import conclude
from evsys.sweep.metric_names import resolve as resolve_metric_name
from evsys.sweep.rows import (
    COMPLETED,
    INTERRUPTED,
    MISSING,
    PLOT_PNG,
    RUNNING,
    SUMMARY_MD,
    SWEEP_PLAN,
    SWEEP_RESULT,
    ArmRow,
    SweepSummary,
    non_seed_overrides,
    number,
    run_groups,
    split_override,
)

# The rows and statistics lived here first; their names stay importable from this module.
from evsys.sweep.rows import SCHEMA_VERSION as SCHEMA_VERSION
from evsys.sweep.rows import GroupRow as GroupRow
from evsys.sweep.rows import MetricStats as MetricStats
from evsys.sweep.rows import metric_names as metric_names
from evsys.sweep.rows import varying_overrides as varying_overrides
from evsys.sweep.summary import plot_success_metric, render_summary

_MAX_ARM_DEPTH = 3  # Hydra puts arms one level down (subdir: ${hydra.job.num})


# -- reading ------------------------------------------------------------------------------------


def aggregate(sweep_dir: Path) -> SweepSummary:
    """Summarise the sweep in ``sweep_dir`` from its files. Raises DataError if it is not one."""
    sweep_dir = Path(sweep_dir).resolve()  # absolute, as the arms' run_dir are
    if not sweep_dir.is_dir():
        raise DataError(f"{sweep_dir} is not a directory")
    plan = _read_json(sweep_dir / SWEEP_PLAN)
    if plan is not None:
        name, planned = plan.get("name") or sweep_dir.name, plan.get("arms") or []
        found = [_read_arm(sweep_dir, a["name"], a["dir"], a) for a in planned]
    else:
        dirs = _discover_arm_dirs(sweep_dir)
        if not dirs:
            raise DataError(
                f"{sweep_dir} is not a sweep directory: no {SWEEP_PLAN}, and no subdirectory "
                f"holds a {RUN_RESULT} or a .hydra/overrides.yaml"
            )
        name = sweep_dir.name
        found = [_read_arm(sweep_dir, d, d, None) for d in dirs]
    arms = [arm for arm, _ in found]
    _fill_missing_group_ids(arms)

    declared = (plan or {}).get("success_metric") or next(
        (_metadata_success_metric(r) for _, r in found if r is not None), None
    )
    hypothesis = (plan or {}).get("hypothesis") or next(
        (h for _, r in found if r is not None and (h := _metadata(r).get("hypothesis"))), ""
    )
    return summarize(name, sweep_dir, arms, declared, str(hypothesis))


def summarize(
    name: str,
    directory: Path,
    arms: list[ArmRow],
    success_metric: Any,
    hypothesis: str = "",
) -> SweepSummary:
    """Run groups, best arm and conclusion of ``arms``; ``success_metric`` as a config gives it
    (a name, or ``{name, direction}``, or None)."""
    success = resolve_metric_name(_success_metric(success_metric), arms)  # `pass_rate`
    best_arm, best_value = _best(arms, success)
    summary = SweepSummary(
        name=name,
        sweep_dir=directory,
        success_metric=success,
        arms=arms,
        groups=run_groups(arms),
        best_arm=best_arm,
        best_value=best_value,
        failed=[a.name for a in arms if a.status not in (COMPLETED, MISSING, RUNNING)],
        missing=[a.name for a in arms if a.status == MISSING],
        hypothesis=hypothesis,
        running=[a.name for a in arms if a.status == RUNNING],
    )
    summary.conclusion = conclude_summary(summary)
    return summary


def conclude_summary(summary: SweepSummary) -> str:
    return conclude(
        hypothesis=summary.hypothesis,
        success_metric=summary.success_metric,
        arms=summary.arms,
        groups=summary.groups,
        best_arm=summary.best_arm,
        best_value=summary.best_value,
    )


def read_arm(
    run_dir: Path, name: str, planned: dict[str, Any] | None = None
) -> tuple[ArmRow, dict[str, Any] | None]:
    """One run directory as an arm, and its ``run_result.json`` (None: none yet), finished or
    only started."""
    return _read_arm(run_dir.parent, name, run_dir.name, planned)


def _read_arm(
    sweep_dir: Path, name: str, rel_dir: str, planned: dict[str, Any] | None
) -> tuple[ArmRow, dict[str, Any] | None]:
    arm_dir = sweep_dir / rel_dir
    record = _read_json(arm_dir / RUN_RESULT, tolerate_broken=True)
    status = str((record or {}).get("status", MISSING))
    # Only the explicit marker says a run ended; without it, the record may say it started.
    if record is not None and not record.get("finished"):
        status = _unfinished_status(record)
        if status == MISSING:
            record = None
    planned, recorded = planned or {}, record or {}
    overrides = list(planned.get("overrides") or recorded.get("overrides") or [])
    if not overrides and record is None:
        overrides = _hydra_overrides(arm_dir)
    config = recorded.get("config") or {}
    seed = planned.get("seed", config.get(SEED, _override_value(overrides, SEED)))
    row = ArmRow(
        name=name,
        dir=rel_dir,
        overrides=overrides,
        status=status,
        metrics=dict(recorded.get("metrics") or {}) if recorded.get("finished") else {},
        error=recorded.get("error"),
        group_id=planned.get("group_id") or (group_id(config) if config else ""),
        seed=_int(seed),
        config_hash=planned.get("config_hash") or recorded.get("config_hash"),
        run_dir=recorded.get("run_dir") or str(arm_dir),
        error_type=recorded.get("error_type"),
    )
    return row, record


def _unfinished_status(record: dict[str, Any]) -> str:
    """A record without its end: ``running`` (or ``interrupted``) when it says the run started."""
    if record.get("status") != RUNNING:
        return MISSING  # a partial record of an older kind: as good as none
    pid = record.get("pid")
    if record.get("host") == platform.node() and isinstance(pid, int) and not _alive(pid):
        return INTERRUPTED
    return RUNNING


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _read_json(path: Path, *, tolerate_broken: bool = False) -> Any:
    """The parsed file, or None when it does not exist (or is broken, if tolerated)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        if tolerate_broken:  # an arm whose record cannot be read is as good as missing
            return None
        raise DataError(f"{path}: cannot read it: {exc}") from exc


def _discover_arm_dirs(sweep_dir: Path) -> list[str]:
    """Relative paths of the run directories under ``sweep_dir``, in Hydra job-number order.

    A run directory holds a ``run_result.json`` or a ``.hydra/overrides.yaml``; the walk does not
    enter one (checkpoints can be large trees) nor go deeper than ``_MAX_ARM_DEPTH`` levels, so a
    wrong path such as a home directory fails fast instead of scanning the disk.
    """
    found = []
    for root, dirs, files in os.walk(sweep_dir):
        here = Path(root)
        depth = len(here.relative_to(sweep_dir).parts)
        if depth and (RUN_RESULT in files or (here / ".hydra" / "overrides.yaml").is_file()):
            found.append(here.relative_to(sweep_dir).as_posix())
            dirs.clear()
        elif depth >= _MAX_ARM_DEPTH:
            dirs.clear()
    # natural order, so that arm 10 follows arm 9
    return sorted(
        found, key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]
    )


def _hydra_overrides(arm_dir: Path) -> list[str]:
    import yaml

    path = arm_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(o) for o in yaml.safe_load(path.read_text()) or []]


def _override_value(overrides: list[str], key: str) -> str | None:
    return next((v for k, v in map(split_override, overrides) if k == key), None)


def _fill_missing_group_ids(arms: list[ArmRow]) -> None:
    """Discovery mode: an arm with no recorded config joins the group of an arm whose overrides
    are the same but for the seed; failing that, it gets a group of its own overrides."""
    by_overrides = {
        tuple(sorted(non_seed_overrides(a.overrides))): a.group_id for a in arms if a.group_id
    }
    for arm in arms:
        if not arm.group_id:
            key = tuple(sorted(non_seed_overrides(arm.overrides)))
            arm.group_id = by_overrides.get(key) or config_hash({"overrides": list(key)})


def _metadata(record: dict[str, Any]) -> dict[str, Any]:
    return (record.get("config") or {}).get("metadata") or {}


def _metadata_success_metric(record: dict[str, Any]) -> Any:
    return _metadata(record).get("success_metric")


def _success_metric(declared: Any) -> dict[str, str] | None:
    """``"eval/x"`` or ``{"name": "eval/x", "direction": "min"}`` → the dict form, or None."""
    if not declared:
        return None
    if isinstance(declared, str):
        return {"name": declared, "direction": "max"}
    if not declared.get("name"):
        return None
    direction = declared.get("direction") or "max"
    if direction not in ("max", "min"):
        raise DataError(f"success_metric direction {direction!r}: expected 'max' or 'min'")
    return {"name": str(declared["name"]), "direction": direction}


# -- statistics ---------------------------------------------------------------------------------


def _best(arms: list[ArmRow], success: dict[str, str] | None) -> tuple[str | None, float | None]:
    """The completed arm with the best value of the success metric; ties go to the first arm."""
    if success is None:
        return None, None
    best: tuple[str, float] | None = None
    maximise = success["direction"] == "max"
    for arm in arms:
        value = number(arm.metrics.get(success["name"])) if arm.status == COMPLETED else None
        if value is None:
            continue
        if best is None or (value > best[1] if maximise else value < best[1]):
            best = (arm.name, value)
    return best if best is not None else (None, None)


# -- writing ------------------------------------------------------------------------------------


def write_sweep_outputs(sweep_dir: Path) -> SweepSummary:
    """Aggregate ``sweep_dir`` and write ``sweep_result.json``, ``summary.md`` and the plot."""
    summary = aggregate(sweep_dir)
    plot_note = plot_success_metric(summary, summary.sweep_dir / PLOT_PNG)
    write_json_atomically(summary.sweep_dir / SWEEP_RESULT, summary.to_dict())
    write_text_atomically(summary.sweep_dir / SUMMARY_MD, render_summary(summary, plot_note))
    return summary
