"""Sweeps driven by a sweeper other than evsys's own (``hydra/sweeper=optuna``, ``basic``, …).

Such a sweeper proposes arms itself, often one batch at a time from the results before it, so
evsys cannot plan every arm up front. It still gives every arm what its own sweeper gives:

- before any arm runs, :class:`ForeignSweepCallback` composes and validates one arm per value of
  every swept key (each interval at both ends), and checks that the sweeper's objectives match
  ``metadata``; a problem refuses the sweep with exit code 2;
- each arm validates its own config before it trains (a bad one is recorded failed, untrained),
  returns its objective to the sweeper (:func:`arm_objective`) and skips training when the same
  arm already completed in its directory (a resumed ``basic`` sweep);
- with the ``dashboard`` log store the sweep is one dashboard experiment, opened by the callback
  before any arm runs as evsys's sweeper opens it (:mod:`evsys.sweep.dashboard`); each arm
  creates its run in it, its id derived from the experiment and the arm's directory;
- at multirun end the callback writes ``sweep_plan.json`` (the arms as proposed), then
  ``sweep_result.json`` and ``summary.md``, as for any evsys sweep, and records the best run,
  best score, conclusion and the arms as proposed on the dashboard experiment.

The callback is registered in ``hydra.callbacks`` by ``conf/base.yaml``; with evsys's own sweeper
it does nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from evsys.preflight import EVOLVE_SWEEPER, EVSYS_SWEEPER

if TYPE_CHECKING:
    from evsys.config import ExperimentConfig
    from evsys.errors import ConfigError, Problem
    from evsys.run.runner import ArmOutcome
    from evsys.sweep.aggregate import SweepSummary
    from evsys.sweep.dashboard import SweepExperiment
    from evsys.sweep.plan import Arm

log = logging.getLogger(__name__)

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
REPLAYABLE_SWEEPERS = (EVSYS_SWEEPER, BASIC_SWEEPER, EVOLVE_SWEEPER)
"""Sweepers that propose the same arms, in the same order, when a sweep is run again (evolve:
from its store, see evsys.evolve.loop)."""
EVSYS_SWEEPERS = (EVSYS_SWEEPER, EVOLVE_SWEEPER)
"""Sweepers that pre-flight, record and aggregate their arms themselves."""
_VALUES_CHECKED_PER_KEY = 20  # a long range() is checked at its first values and its last
PROPOSED_AS_IT_RUNS = "one batch at a time by the sweeper; listed after the sweep ended"
_OPTUNA_DIRECTIONS = {"maximize": "max", "minimize": "min"}


def sweeper_target(config: DictConfig) -> str | None:
    return OmegaConf.select(config, "hydra.sweeper._target_")


def is_foreign(config: DictConfig) -> bool:
    """Whether ``config`` (a Hydra config with its ``hydra`` node) sweeps with another sweeper."""
    return sweeper_target(config) not in EVSYS_SWEEPERS


class ForeignSweepCallback(Callback):
    """evsys's pre-flight, dashboard experiment and aggregation around a sweep that another
    sweeper drives. Hydra calls both hooks on the same instance, in the process that drives the
    sweep."""

    experiment: SweepExperiment | None = None
    config: DictConfig | None = None
    running: ForeignSweepCallback | None = None
    """The sweep this process drives, from its start to its end (see evsys.sweep.foreign_crash)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_foreign(config):
            return  # evsys's sweeper plans, validates and aggregates itself
        problems_report, samples = preflight_foreign_sweep(config)
        if problems_report:
            print(problems_report, file=sys.stderr)
            sys.exit(2)  # SystemExit passes through Hydra's callback guard: nothing has run
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.experiment = open_foreign_experiment(sweep_dir, config, samples[0])
        OmegaConf.save(config, sweep_dir / "multirun.yaml")  # evsys resume reads the sweeper here
        self.config, ForeignSweepCallback.running = config, self

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_foreign(config):
            return
        from evsys.errors import DataError
        from evsys.exit_codes import note_sweep_exit_code
        from evsys.sweep.sweeper import finish_sweep

        sweep_dir = Path(config.hydra.sweep.dir)
        experiment, self.experiment = self.experiment, None
        ForeignSweepCallback.running = None
        try:
            summary = write_foreign_sweep_outputs(sweep_dir, config)
        except DataError as exc:  # the sweeper launched nothing
            print(f"evsys: no arm to aggregate: {exc}", file=sys.stderr)
            if experiment is not None:
                experiment.client.update_experiment(experiment.experiment_id, status="failed")
                experiment.close()
            return
        if experiment is not None:
            conclude_foreign_experiment(experiment, summary)
        note_sweep_exit_code(finish_sweep(summary))


# -- before the sweep ----------------------------------------------------------------------------


def preflight_foreign_sweep(config: DictConfig) -> tuple[str | None, list[Arm]]:
    """Every problem of the sample arms and of the sweeper's objectives, as one report (None:
    ok), and the sample arms, composed and validated."""
    from evsys.errors import ConfigError
    from evsys.report import format_problems
    from evsys.sweep.plan import bad_arms, preflight
    from evsys.sweep.sweeper import format_bad_arms

    try:
        samples = sample_arms(_sweep_lines(config))
    except ConfigError as exc:
        return format_problems(exc.problems), []
    arms = preflight(samples, config_name=config.hydra.job.config_name or "config")
    if bad_arms(arms):
        report = format_bad_arms(arms).replace("arms are invalid", "sample arms are invalid")
        return report, arms
    assert arms[0].config is not None
    problems = objective_problems(config, arms[0].config)
    if problems:
        header = f"evsys: the sweeper ({sweeper_target(config)}) cannot optimise this experiment:"
        return format_problems(problems, header=header), arms
    return None, arms


def open_foreign_experiment(
    sweep_dir: Path, config: DictConfig, sample: Arm
) -> SweepExperiment | None:
    """The sweep's dashboard experiment, as evsys's sweeper opens it (None: the arms' log store
    has no dashboard): created now — or, when the sweep directory names one already (a resumed
    ``basic`` sweep), that one goes on. Its arms are not known yet: the sweeper proposes them as
    it runs, and they are listed in the experiment's plan at the end. Each arm finds the id in
    the sweep directory and creates its run there (:mod:`evsys.log_stores.dashboard`).

    A key the dashboard refuses ends the sweep now with exit code 2, before any arm starts."""
    from evsys.errors import ConfigError
    from evsys.report import format_problems
    from evsys.sweep.dashboard import open_sweep_experiment

    assert sample.config is not None
    plan = {
        "name": sample.config.name,
        "sweeper": sweeper_target(config),
        "launcher": OmegaConf.select(config, "hydra.launcher._target_"),
        "proposed": PROPOSED_AS_IT_RUNS,
        "arms": [],
    }
    try:
        return open_sweep_experiment(sweep_dir, [sample], plan)
    except ConfigError as exc:
        print(format_problems(exc.problems, header=exc.header), file=sys.stderr)
        sys.exit(2)


def _sweep_lines(config: DictConfig) -> list[str]:
    """The sweep's override lines: ``hydra.sweeper.params``, then the command line's."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    lines = [f"{key}={value}" for key, value in params.items()]
    return lines + list(config.hydra.overrides.task)


def sample_arms(lines: list[str]) -> list[list[str]]:
    """Arms that, together, set every swept key to each of its values once (an interval to both
    ends): the first arm takes every key's first value, each other arm changes one key."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from evsys.compose.compose import config_loader
    from evsys.errors import ConfigError, Problem

    parser = OverridesParser.create(config_loader=config_loader())
    try:
        parsed = parser.parse_overrides(lines)
    except Exception as exc:  # Hydra's grammar error names the line
        raise ConfigError(Problem(path="overrides", message=str(exc), value=lines)) from None
    # A fixed override stays as written (`~key`, quoting); a swept one takes each sample value.
    axes = [_sample_lines(o) if o.is_sweep_override() else [o.input_line] for o in parsed]
    first = [lines[0] for lines in axes]
    arms = [first]
    for position, lines in enumerate(axes):
        arms += [[*first[:position], line, *first[position + 1 :]] for line in lines[1:]]
    return arms


def _sample_lines(override: Any) -> list[str]:
    return [f"{override.get_key_element()}={value}" for value in _sample_values(override)]


def _sample_values(override: Any) -> list[str]:
    if override.is_interval_sweep():
        interval = override.value()
        return [str(interval.start), str(interval.end)]
    values = list(override.sweep_string_iterator())
    if len(values) > _VALUES_CHECKED_PER_KEY:
        half = _VALUES_CHECKED_PER_KEY // 2
        values = values[:half] + values[-half:]
    return values or [""]


def objective_names(config: ExperimentConfig) -> list[str]:
    """The metrics an arm returns to its sweeper: ``metadata.objectives``, else the success
    metric; none when neither is set."""
    metadata = config.metadata
    if metadata.objectives:
        return [o.name for o in metadata.objectives]
    return [metadata.success_metric.name] if metadata.success_metric else []


def objective_problems(config: DictConfig, experiment: ExperimentConfig) -> list[Problem]:
    """A sweeper that optimises (its config has ``direction``: Optuna) needs the metrics it
    optimises declared, one per direction, each better the way the sweeper optimises it."""
    from evsys.errors import Problem

    declared = OmegaConf.select(config, "hydra.sweeper.direction")
    if declared is None:
        return []
    raw = list(declared) if OmegaConf.is_list(declared) else [declared]
    directions = [str(getattr(d, "name", d)) for d in raw]
    metadata = experiment.metadata
    objectives = metadata.objectives or (
        [metadata.success_metric] if metadata.success_metric else []
    )
    if not objectives:
        return [
            Problem(
                path="metadata.success_metric",
                message="the sweeper optimises the value each arm returns, and no metric is "
                "declared; set the metric it optimises (metadata.objectives for several)",
                expected="a key of run_result.json metrics, e.g. eval/exact_match",
            )
        ]
    if len(objectives) != len(directions):
        return [
            Problem(
                path="metadata.objectives",
                message=f"the sweeper has {len(directions)} direction(s) and the experiment "
                f"declares {len(objectives)} objective(s); list one metric per direction",
                value=[o.name for o in objectives],
                expected=f"{len(directions)} metric(s), for hydra.sweeper.direction={directions}",
            )
        ]
    problems = []
    for metric, direction in zip(objectives, directions, strict=True):
        wanted = _OPTUNA_DIRECTIONS.get(direction)
        if wanted is not None and wanted != metric.direction:
            fix = {v: k for k, v in _OPTUNA_DIRECTIONS.items()}[metric.direction]
            problems.append(
                Problem(
                    path="hydra.sweeper.direction",
                    message=f"the sweeper would {direction} {metric.name}, which the experiment "
                    f"declares better when {'higher' if metric.direction == 'max' else 'lower'}",
                    value=direction,
                    expected=fix,
                )
            )
    return problems


# -- in each arm ---------------------------------------------------------------------------------


def arm_objective(config: ExperimentConfig, record: dict[str, Any]) -> Any:
    """What the arm returns to its sweeper: the raw value of its one objective, a tuple of them
    for several (the sweeper applies its own directions), or None when the arm did not complete
    or lacks one: Optuna then fails the trial and goes on with the study (an exception would end
    the study, a NaN breaks hydra-optuna-sweeper 1.3)."""
    from evsys.sweep.aggregate import number

    names = objective_names(config)
    if record.get("status") != "completed" or not names:
        return None
    from evsys.sweep.metric_names import candidates

    metrics = record.get("metrics") or {}
    # A bare name (`pass_rate`) is the one reported metric it names, as for the best arm.
    names = [found[0] if len(found := candidates(n, metrics)) == 1 else n for n in names]
    values = [number(metrics.get(name)) for name in names]
    lacking = [name for name, value in zip(names, values, strict=True) if value is None]
    if lacking:
        log.warning("the arm completed without a number for %s; its sweeper gets None", lacking)
        return None
    return values[0] if len(values) == 1 else tuple(values)


def refuse_arm(
    run_dir: Path, resolved: Any, overrides: list[str], error: ConfigError
) -> ArmOutcome:
    """Report an arm whose config is invalid and record it failed, without training it."""
    from evsys.errors import ConfigError
    from evsys.protocols import RunResult
    from evsys.report import format_problems
    from evsys.run.record import new_run_id, write_run_result
    from evsys.run.runner import ArmOutcome

    shown = " ".join(overrides) or "no overrides"
    header = f"evsys: arm {run_dir.name} ({shown}) is invalid; it was not trained:"
    print(format_problems(error.problems, header=header), file=sys.stderr)
    name = str(resolved.get("name") or run_dir.name) if isinstance(resolved, dict) else "arm"
    result = RunResult(run_id=new_run_id(name), status="failed", error=f"ConfigError: {error}")
    record = write_run_result(
        run_dir,
        result,
        name=name,
        config=resolved if isinstance(resolved, dict) else {},
        overrides=overrides,
        started_at=datetime.now(UTC),
        error_type=ConfigError.__name__,  # whichever kind: the arm's input was refused
    )
    return ArmOutcome(result=result, record=record)


def completed_before(run_dir: Path, config: ExperimentConfig) -> dict[str, Any] | None:
    """The record of this very arm (same config hash) completed in ``run_dir`` by an earlier
    attempt of the sweep, or None."""
    from evsys.run.record import RUN_RESULT, config_hash, redact

    try:
        record = json.loads((run_dir / RUN_RESULT).read_text())
    except (OSError, ValueError):
        return None
    same = record.get("config_hash") == config_hash(redact(config.model_dump(mode="json")))
    done = record.get("finished") is True and record.get("status") == "completed"
    return record if same and done else None


def set_aside_previous_attempt(run_dir: Path, keep: tuple[str, ...]) -> None:
    """Move what an earlier attempt left in ``run_dir`` to ``<sweep>/.attempts/``, except
    ``keep`` (what Hydra already wrote for this attempt: ``.hydra``, the job's log)."""
    from evsys.run.record import RUN_RESULT

    if not (run_dir / RUN_RESULT).exists():
        return
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = run_dir.parent / ".attempts" / f"{run_dir.name}.{stamp}"
    target.mkdir(parents=True, exist_ok=True)
    for entry in run_dir.iterdir():
        if entry.name not in keep:
            shutil.move(str(entry), target / entry.name)


# -- after the sweep -----------------------------------------------------------------------------


def write_foreign_sweep_outputs(sweep_dir: Path, config: DictConfig) -> SweepSummary:
    """``sweep_plan.json`` listing the arms the sweeper proposed, then the aggregate outputs."""
    from evsys.files import write_json_atomically
    from evsys.sweep.aggregate import SWEEP_PLAN, aggregate, write_sweep_outputs

    found = aggregate(sweep_dir)  # discovery: the arm directories that exist
    write_json_atomically(
        sweep_dir / SWEEP_PLAN,
        {
            "name": OmegaConf.select(config, "name") or found.name,
            "created_at": datetime.now(UTC).isoformat(),
            "hypothesis": found.hypothesis,
            "success_metric": found.success_metric,
            "launcher": OmegaConf.select(config, "hydra.launcher._target_"),
            "sweeper": sweeper_target(config),
            "proposed": PROPOSED_AS_IT_RUNS,
            "arms": [
                {
                    "name": arm.name,
                    "dir": arm.dir,
                    "overrides": arm.overrides,
                    "config_hash": arm.config_hash,
                    "group_id": arm.group_id,
                    "seed": arm.seed,
                }
                for arm in found.arms
            ],
        },
    )
    return write_sweep_outputs(sweep_dir)


def conclude_foreign_experiment(experiment: SweepExperiment, summary: SweepSummary) -> None:
    """Best run, best score, conclusion and status of the sweep's experiment, and its plan now
    that the arms are known. Bookkeeping: a failure is a warning, the sweep's files hold it all."""
    from evsys.sweep.aggregate import SWEEP_PLAN

    try:
        plan = json.loads((summary.sweep_dir / SWEEP_PLAN).read_text(encoding="utf-8"))
        experiment.conclude(summary, sweep_plan=plan)
    except Exception as exc:
        log.warning("recording the sweep's outcome on the dashboard failed: %s", exc)
