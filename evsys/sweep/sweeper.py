"""Running a sweep: pre-flight every arm, launch the ones not yet done, record, aggregate.

Called by the evsys Hydra sweeper plugin (``hydra/sweeper=evsys``, the default). The sweep
directory holds ``sweep_plan.json`` (every arm, written before any starts), one directory per arm
named after what it varies, and the aggregate outputs. Re-running a sweep into the same directory
(``evsys resume <dir>``) skips arms that completed and re-runs the others, after checking that
each arm's config is still the one the plan recorded.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from evsys.data.references import preflight_references
from evsys.errors import ConfigError, Problem
from evsys.files import write_json_atomically
from evsys.interrupts import interruption
from evsys.output_dirs import claim, release
from evsys.preflight import hydra_settings, is_sweep_override, plan_arms  # noqa: F401 (re-exported)
from evsys.protocols import RunResult
from evsys.report import format_arm_problems, format_number, format_problems
from evsys.run.record import (
    RUN_RESULT,
    new_run_id,
    redact,
    traces_of_a_dead_run,
    write_run_result,
)
from evsys.sweep.aggregate import SweepSummary, write_sweep_outputs
from evsys.sweep.arm_nodes import check_arm_nodes
from evsys.sweep.conclusion import unreported_metric
from evsys.sweep.dashboard import open_sweep_experiment
from evsys.sweep.plan import Arm, SweepAxes, bad_arms

log = logging.getLogger(__name__)

PLAN = "sweep_plan.json"
EXIT_OK, EXIT_ARM_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def sweeper_settings(
    overrides: list[str], config_name: str | None = None
) -> tuple[SweepAxes, str | None]:
    """``hydra.sweeper`` of the config these overrides compose (an experiment usually sets it).
    Raises ConfigError when Hydra's settings are wrong (see :func:`evsys.preflight.hydra_settings`)."""
    settings = hydra_settings(overrides, config_name)
    return settings.axes, settings.name_template


def format_bad_arms(arms: list[Arm]) -> str:
    return format_arm_problems(
        [(arm.index, arm.name, arm.problems) for arm in bad_arms(arms)], len(arms)
    )


def run_sweep(
    *,
    config: DictConfig,
    launcher: Any,
    arguments: list[str],
    axes: SweepAxes,
    name_template: str | None,
    max_batch_size: int | None,
) -> int:
    """Run the sweep; returns the exit code (2 bad arms, 1 an arm failed, 0 all completed)."""
    sweep_dir = Path(config.hydra.sweep.dir)
    try:
        arms = plan_arms(arguments, axes, name_template, config.hydra.job.config_name)
    except ConfigError as exc:
        print(format_problems(exc.problems, header=exc.header), file=sys.stderr)
        return EXIT_BAD_INPUT
    if bad_arms(arms):
        print(format_bad_arms(arms), file=sys.stderr)
        return EXIT_BAD_INPUT
    # Launchers with requirements of their own (GPU slots) check every arm here too.
    check_launcher = getattr(launcher, "check_arms", None)
    try:
        if check_launcher is not None:
            check_launcher([(arm.name, arm.resolved) for arm in arms])
        check_arm_nodes(launcher, [(arm.name, arm.resolved) for arm in arms])
    except ConfigError as exc:
        print(format_problems(exc.problems, header=exc.header), file=sys.stderr)
        return EXIT_BAD_INPUT
    changed = changed_since_plan(sweep_dir, arms)
    if changed:
        print(
            format_problems(changed, header=f"evsys: cannot resume {sweep_dir}:"), file=sys.stderr
        )
        return EXIT_BAD_INPUT
    try:
        # Every dataset and benchmark reference, resolved (pulled) before any arm starts.
        preflight_references([arm.config for arm in arms if arm.config is not None])
        # `python -m evsys` claimed it already; a sweep started otherwise claims it here
        claim(sweep_dir, fresh=False)
    except ConfigError as exc:
        print(format_problems(exc.problems, header=exc.header), file=sys.stderr)
        return EXIT_BAD_INPUT

    try:
        summary = launch_arms(sweep_dir, config, launcher, arms, max_batch_size)
    except ConfigError as exc:  # the dashboard refused the sweep's experiment: no arm started
        print(format_problems(exc.problems, header=exc.header), file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        release(sweep_dir)
    return finish_sweep(summary)


def finish_sweep(summary: SweepSummary) -> int:
    """The end of any sweep (evsys's, evolve's, another sweeper's): its report, then the deploy of
    its best arm when the config has a ``deploy:`` section; the sweep's exit code."""
    from evsys.deploy.actions import deploy_at_sweep_end

    code = report_sweep(summary)
    return max(code, deploy_at_sweep_end(summary))


def report_sweep(summary: SweepSummary) -> int:
    """Print where the sweep's summary is, its best arm and what did not complete; returns the
    sweep's exit code (2 an arm's config was refused, 1 another did not complete, 0 ok)."""
    summary_md = summary.sweep_dir / "summary.md"
    print(f"evsys: sweep {summary.sweep_dir}: {len(summary.arms)} arms, summary in {summary_md}")
    if summary.best_arm:
        print(
            f"  best arm: {summary.best_arm} ({summary.success_metric['name']} = {format_number(summary.best_value)})"
        )
    for name in [*summary.failed, *summary.running, *summary.missing]:
        print(f"  not completed: {name}")
    if summary.conclusion:
        print("", *(f"  {line}" for line in summary.conclusion.splitlines()), sep="\n")
    if any(a.error_type == ConfigError.__name__ for a in summary.arms):
        return EXIT_BAD_INPUT
    # A success metric no arm reported: known only now, it is bad input all the same.
    unreported = summary.success_metric and unreported_metric(
        summary.success_metric["name"], summary.arms
    )
    if unreported:
        print(f"evsys: metadata.success_metric: {unreported}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return (
        EXIT_OK if not (summary.failed or summary.running or summary.missing) else EXIT_ARM_FAILED
    )


def launch_arms(
    sweep_dir: Path,
    config: DictConfig,
    launcher: Any,
    arms: list[Arm],
    max_batch_size: int | None,
    dashboard: Any = None,
) -> SweepSummary:
    """Launch the arms of a validated sweep that have not completed yet; aggregate them all.

    ``config`` is the sweep's config with its ``hydra`` node (saved as ``multirun.yaml``, which
    ``evsys resume`` replays); ``launcher`` has Hydra's ``launch(jobs, initial_job_idx)``.
    ``dashboard``: a DashboardClient or its settings (``Experiment(store=...)``); with it, or a
    ``dashboard`` log store, the sweep is one experiment on the dashboard (ConfigError when the
    dashboard refuses it, before any arm starts).
    """
    sweep_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(sweep_dir, config, arms)
    experiment = open_sweep_experiment(sweep_dir, arms, plan, dashboard)
    try:
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        write_json_atomically(sweep_dir / PLAN, plan)
        summary = _launch_pending(sweep_dir, launcher, arms, max_batch_size)
    except BaseException as exc:
        if experiment is not None and interruption(exc) is not None:
            experiment.end_interrupted()
        elif experiment is not None:
            experiment.close()
        raise
    if experiment is not None:
        try:
            experiment.conclude(summary)
        except Exception as exc:  # bookkeeping: the sweep's own files say it all
            log.warning("recording the sweep's outcome on the dashboard failed: %s", exc)
    return summary


def _launch_pending(
    sweep_dir: Path, launcher: Any, arms: list[Arm], max_batch_size: int | None
) -> SweepSummary:
    pending = [arm for arm in arms if not is_completed(sweep_dir / arm.name)]
    log.info("sweep %s: %d arms, %d to run", sweep_dir, len(arms), len(pending))
    run_pending_arms(sweep_dir, launcher, pending, max_batch_size)
    return write_sweep_outputs(sweep_dir)


def run_pending_arms(
    sweep_dir: Path, launcher: Any, pending: list[Arm], max_batch_size: int | None
) -> None:
    """Launch ``pending`` arms in batches through Hydra's launcher API, each into
    ``sweep_dir/<arm name>``; an earlier attempt is set aside first, and an arm that ends
    without its record is recorded failed (the evolve sweeper launches its generations here)."""
    for arm in pending:
        _set_aside_previous_attempt(sweep_dir, arm)

    for batch in _batches(pending, max_batch_size):
        jobs = [[*arm.overrides, f"hydra.sweep.subdir={arm.name}"] for arm in batch]
        if hasattr(launcher, "arm_ended"):  # launchers that report each arm as it ends
            launcher.arm_ended = lambda position, returned, batch=batch: _record_if_unfinished(
                sweep_dir, batch[position], returned
            )
        try:
            returns = launcher.launch(jobs, initial_job_idx=batch[0].index)
        except Exception as exc:  # the launcher gave up on the whole batch
            log.error("launching arms %s failed: %s", [a.name for a in batch], exc)
            returns = [exc] * len(batch)
        for arm, returned in zip(batch, returns, strict=True):
            _record_if_unfinished(sweep_dir, arm, returned)


def is_completed(arm_dir: Path) -> bool:
    """An arm is done when its record says it finished and completed — not when a file exists."""
    try:
        record = json.loads((arm_dir / RUN_RESULT).read_text())
    except (OSError, ValueError):
        return False
    return record.get("finished") is True and record.get("status") == "completed"


def changed_since_plan(sweep_dir: Path, arms: list[Arm]) -> list[Problem]:
    """Why the arms cannot resume the sweep in ``sweep_dir`` (none when it has no plan yet):
    arms the sweep did not have, and each setting that changed (``path: old → new``)."""
    try:
        previous = json.loads((sweep_dir / PLAN).read_text())
    except FileNotFoundError:
        return []
    except ValueError as exc:
        return [Problem(path=PLAN, message=f"unreadable plan: {exc}")]
    recorded = {entry["name"]: entry for entry in previous.get("arms", [])}
    problems = []
    changes: dict[tuple[str, str], list[str]] = {}  # (setting, "old → new") → the arms
    for arm in arms:
        entry = recorded.get(arm.name)
        if entry is None:
            problems.append(
                Problem(
                    path=arm.name,
                    message="this arm is not in the sweep being resumed; start a new sweep instead",
                    value=arm.overrides,
                )
            )
        elif entry.get("config_hash") != arm.config_hash:
            assert arm.config is not None
            now = redact(arm.config.model_dump(mode="json"))
            changed = settings_changed(_config_at_start(sweep_dir, entry), now)
            if not changed:  # neither the plan nor a record holds the arm's old config
                problems.append(
                    Problem(
                        path=arm.name,
                        message="the arm's resolved config changed since the sweep started "
                        "(config hash differs); start a new sweep, or restore the config",
                        value=arm.config_hash,
                        expected=entry.get("config_hash"),
                    )
                )
            for setting, change in changed:
                changes.setdefault((setting, change), []).append(arm.name)
    for (setting, change), names in changes.items():
        which = "every arm" if len(names) == len(arms) else "arms " + ", ".join(names)
        problems.append(
            Problem(
                path=setting,
                message=f"changed since the sweep started: {change} ({which}); "
                "restore it, or start a new sweep",
            )
        )
    return problems


def _config_at_start(sweep_dir: Path, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The arm's config as the sweep planned it; plans older than that field: its record's."""
    if isinstance(entry.get("config"), dict):
        return entry["config"]
    try:
        record = json.loads((sweep_dir / entry.get("dir", entry["name"]) / RUN_RESULT).read_text())
    except (OSError, ValueError):
        return None
    return record.get("config") if isinstance(record.get("config"), dict) else None


def settings_changed(before: dict[str, Any] | None, after: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(dotted setting, "old → new")]`` between two resolved configs; [] when ``before`` is
    None."""
    from evsys.run.compare import diff_runs

    if before is None:
        return []
    diff = diff_runs({"config": before}, {"config": after})
    absent = "(absent)"
    lines = [(k, f"{_show(a)} → {_show(b)}") for k, (a, b) in diff.changed.items()]
    lines += [(k, f"{absent} → {_show(v)}") for k, v in diff.added.items()]
    lines += [(k, f"{_show(v)} → {absent}") for k, v in diff.removed.items()]
    return sorted(lines)


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def _plan(sweep_dir: Path, config: DictConfig, arms: list[Arm]) -> dict[str, Any]:
    """What ``sweep_plan.json`` holds."""
    first = arms[0].config if arms else None
    success = first.metadata.success_metric if first else None
    return {
        "name": first.name if first else sweep_dir.name,
        "created_at": datetime.now(UTC).isoformat(),
        "hypothesis": first.metadata.hypothesis if first else "",
        "success_metric": success.model_dump() if success else None,
        "launcher": OmegaConf.select(config, "hydra.launcher._target_"),
        # each arm's config, so that a refused resume can say which setting changed
        "arms": [
            {**arm.plan_entry(), "config": redact(arm.config.model_dump(mode="json"))}
            if arm.config
            else arm.plan_entry()
            for arm in arms
        ],
    }


def _set_aside_previous_attempt(sweep_dir: Path, arm: Arm) -> None:
    """Keep a failed or interrupted attempt for inspection instead of mixing it with the next."""
    arm_dir = sweep_dir / arm.name
    if not arm_dir.exists():
        return
    attempts = sweep_dir / ".attempts"
    attempts.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    shutil.move(str(arm_dir), attempts / f"{arm.name}.{stamp}")


def _record_if_unfinished(sweep_dir: Path, arm: Arm, returned: Any) -> None:
    """An arm that died without writing its record (killed, cancelled, crashed) is recorded failed."""
    arm_dir = sweep_dir / arm.name
    try:
        if json.loads((arm_dir / RUN_RESULT).read_text()).get("finished") is True:
            return
    except (OSError, ValueError):
        pass
    error = (
        returned
        if isinstance(returned, BaseException)
        else getattr(returned, "_return_value", None)
    )
    message = (
        f"{type(error).__name__}: {error}"
        if isinstance(error, BaseException)
        else "the arm ended without a result"
    )
    arm_dir.mkdir(parents=True, exist_ok=True)
    assert arm.config is not None
    started_at, logged = traces_of_a_dead_run(arm_dir)  # its real duration, its curves so far
    stop = interruption(error) if isinstance(error, BaseException) else None
    write_run_result(
        arm_dir,
        RunResult(
            run_id=new_run_id(arm.config.name),
            status=stop.status if stop is not None else "failed",  # stopped before its record
            error=message,
            metrics=logged,
        ),
        name=arm.config.name,
        config=arm.config.model_dump(mode="json"),
        overrides=arm.overrides,
        started_at=started_at or datetime.now(UTC),
        error_type=type(error).__name__ if isinstance(error, BaseException) else None,
    )


def _batches(arms: Sequence[Arm], size: int | None) -> Iterator[list[Arm]]:
    size = size or len(arms) or 1
    for start in range(0, len(arms), size):
        yield list(arms[start : start + size])
