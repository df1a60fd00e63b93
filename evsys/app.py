"""``python -m evsys``: a Hydra app whose config is checked in full before anything runs.

Hydra parses the command line, composes, creates the run directory and calls :func:`run_task`.
Before handing over, evsys composes the same overrides itself (leniently, see
:mod:`evsys.compose.compose`) and validates the result; a bad config is reported in one go, with
exit code 2, and nothing is written under ``outputs/``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from evsys.compose.nodes import ensure_published
from evsys.compose.resolvers import register_resolvers
from evsys.compose.value_overrides import install as install_override_rule

# Exit codes were kept here first; their names stay importable from this module.
from evsys.exit_codes import EXIT_BAD_INPUT as EXIT_BAD_INPUT
from evsys.exit_codes import EXIT_OK as EXIT_OK
from evsys.exit_codes import EXIT_RUN_FAILED as EXIT_RUN_FAILED
from evsys.exit_codes import exit_code, note_deploy_exit_code, note_outcome
from evsys.exit_codes import note_sweep_exit_code as note_sweep_exit_code
from evsys.paths import config_dir, primary_config_name


def run_task(cfg: DictConfig) -> Any:
    """Hydra's task function: validate, run one arm, print its summary. Picklable (submitit).

    Returns the arm's objective for a sweeper that optimises it (Optuna): the success metric's
    value, a tuple for ``metadata.objectives``, None when the arm did not complete. Under a
    sweeper other than evsys's, an arm also refuses a bad config itself (recorded, untrained) and
    is not run again when its directory holds its completed record (see evsys.sweep.foreign).
    """
    from evsys.interrupts import ArmInterrupted, ArmInterruptedError, in_submitit_job, signals_raise

    # From the task's first moment: in a submitit job, submitit's own handler ignores SIGTERM.
    with signals_raise():
        try:
            return _run_task(cfg)
        except ArmInterrupted as stop:  # run_arm recorded it (the sweep does, if it came earlier)
            if in_submitit_job():  # submitit passes only an Exception back as the job's end
                raise ArmInterruptedError(stop.status, str(stop)) from None
            raise


def _run_task(cfg: DictConfig) -> Any:
    from evsys.errors import ConfigError
    from evsys.report import format_run_summary
    from evsys.run.runner import run_arm
    from evsys.sweep import foreign
    from evsys.validation import validate_experiment

    register_resolvers()  # also in a worker process that never ran main()
    hydra_cfg = HydraConfig.get()
    run_dir, overrides = Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
    swept_by_another = (
        hydra_cfg.mode == RunMode.MULTIRUN
        and hydra_cfg.sweeper.get("_target_") not in foreign.EVSYS_SWEEPERS
    )
    resolved = OmegaConf.to_container(cfg, resolve=True)
    try:
        config = validate_experiment(resolved)
    except ConfigError as exc:
        if not swept_by_another:  # evsys's sweeper and a single run validated it already
            raise
        note_outcome(foreign.refuse_arm(run_dir, resolved, overrides, exc))
        return None
    if swept_by_another:
        done = foreign.completed_before(run_dir, config)
        if done is not None:
            print(f"evsys: {run_dir} completed in an earlier attempt of the sweep; kept as it is")
            print(format_run_summary(done))
            return foreign.arm_objective(config, done)
        foreign.set_aside_previous_attempt(run_dir, keep=(".hydra", f"{hydra_cfg.job.name}.log"))
    outcome = run_arm(config, run_dir, overrides=overrides)
    note_outcome(outcome)
    print(format_run_summary(outcome.record))
    # Once its record is final. A sweep deploys only its best arm, at its end (the sweeper).
    if config.deploy is not None and hydra_cfg.mode == RunMode.RUN:
        from evsys.deploy.actions import deploy_at_run_end

        note_deploy_exit_code(deploy_at_run_end(run_dir))
    return foreign.arm_objective(config, outcome.record)


def preflight(overrides: list[str], config_name: str, *, multirun: bool = False) -> list[str]:
    """Check everything a run (or with ``multirun`` a sweep) needs before anything is written,
    then claim its output directory. Returns the override that points Hydra at the claimed
    directory; exits with code 2 and one report when the input is bad."""
    return _preflight(overrides, config_name, multirun=multirun)[0]


def _preflight(overrides: list[str], config_name: str, *, multirun: bool) -> tuple[list[str], Any]:
    from evsys.data.references import preflight_references
    from evsys.errors import ConfigError
    from evsys.log_stores.dashboard import check_key
    from evsys.output_dirs import claim
    from evsys.preflight import check_run, plan_sweep, quote_override_value
    from evsys.report import format_problems
    from evsys.sweep.plan import bad_arms
    from evsys.sweep.sweeper import format_bad_arms

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        if multirun:
            arms, settings = plan_sweep(overrides, config_name)
            if bad_arms(arms):
                print(format_bad_arms(arms), file=sys.stderr)
                sys.exit(EXIT_BAD_INPUT)
            configs = [arm.config for arm in arms if arm.config is not None]
        else:
            _, config, settings = check_run(overrides, config_name)
            configs = [config]
        preflight_references(configs)  # dashboard datasets and benchmarks, pulled before a run
        if configs:  # a dashboard log store: its key, checked before anything is written
            check_key(configs[0].log_store)
        directory = claim(Path(settings.dirs[key]), fresh=settings.stamped[key], key=key)
    except ConfigError as exc:
        print(format_problems(exc.problems, header=exc.header), file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    return [f"{key}={quote_override_value(str(directory))}"], settings


def main(argv: list[str] | None = None) -> None:
    from evsys.cli.command_line import hydra_argv

    # Hydra's own parser reads sys.argv: its flags first, wherever they were typed.
    sys.argv = [sys.argv[0], *hydra_argv(sys.argv[1:] if argv is None else argv)]
    register_resolvers()
    ensure_published()
    install_override_rule()  # Hydra's composition applies overrides as validation did

    sweep_end: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if _starts_a_run(sys.argv[1:]):
        args, unknown = _hydra_args(sys.argv[1:])
        if unknown:  # Hydra's parser would refuse them too, after evsys claimed a directory
            print(f"evsys: unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        config_name = args.config_name or primary_config_name()
        # Hydra takes the directory evsys claimed: a later override of the same key wins.
        claimed, settings = _preflight(args.overrides, config_name, multirun=args.multirun)
        sys.argv += claimed
        from evsys.preflight import EVOLVE_SWEEPER

        if args.multirun and settings.foreign_sweeper not in (None, EVOLVE_SWEEPER):
            from evsys.sweep.foreign_crash import sweeper_failure_ended

            sweep_end = sweeper_failure_ended()  # another sweeper's loop may raise

    from evsys.interrupts import ArmInterrupted, interruption, signals_raise

    try:
        # Signals raise from here on: a sweep's launcher stops its arms, each arm records itself.
        with signals_raise(), sweep_end:
            hydra.main(
                config_path=str(config_dir()),
                config_name=primary_config_name(),
                version_base="1.3",
            )(run_task)()
    except (ArmInterrupted, KeyboardInterrupt) as exc:
        stop = interruption(exc)
        assert stop is not None
        print(
            f"evsys: {stop.reason}. The arm that was running is recorded {stop.status!r}; "
            "`evsys resume <sweep dir>` runs a sweep's unfinished arms again.",
            file=sys.stderr,
        )
        sys.exit(stop.exit_code)
    sys.exit(exit_code())


# Hydra flags that print something and exit without running the task.
_PRINT_ONLY_FLAGS = frozenset(
    ["-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info"]
    + ["-sc", "--shell-completion"]
)


def _starts_a_run(argv: list[str]) -> bool:
    return not any(token.split("=")[0] in _PRINT_ONLY_FLAGS for token in argv)


def _hydra_args(argv: list[str]):
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_known_args(argv)
