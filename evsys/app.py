"""``python -m evsys``: a Hydra app whose config is checked in full before anything runs.

Hydra parses the command line, composes, creates the run directory and calls :func:`run_task`.
Before handing over, evsys composes the same overrides itself (leniently, see
:mod:`evsys.compose.compose`) and validates the result; a bad config is reported in one go, with
exit code 2, and nothing is written under ``outputs/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from evsys.compose.nodes import ensure_published
from evsys.compose.resolvers import register_resolvers
from evsys.paths import config_dir, primary_config_name

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2

# Outcomes of the arms this process ran, and of a sweep it drove, for the exit code (Hydra drops
# task return values; with submitit the arms even run in other processes).
_outcomes: list = []
_sweep_exit_codes: list[int] = []


def note_sweep_exit_code(code: int) -> None:
    _sweep_exit_codes.append(code)


def run_task(cfg: DictConfig) -> None:
    """Hydra's task function: validate, run one arm, print its summary. Picklable (submitit)."""
    from evsys.report import format_run_summary
    from evsys.run.runner import run_arm
    from evsys.validation import validate_experiment

    register_resolvers()  # also in a worker process that never ran main()
    hydra_cfg = HydraConfig.get()
    config = validate_experiment(OmegaConf.to_container(cfg, resolve=True))
    outcome = run_arm(
        config, Path(hydra_cfg.runtime.output_dir), overrides=list(hydra_cfg.overrides.task)
    )
    _outcomes.append(outcome)
    print(format_run_summary(outcome.record))


def preflight(overrides: list[str], config_name: str) -> int:
    """Compose and validate as the run will; print every problem. Returns an exit code."""
    from evsys.compose.compose import compose_and_validate
    from evsys.errors import ConfigError
    from evsys.report import print_problems

    try:
        compose_and_validate(overrides, config_name)
    except ConfigError as exc:
        print_problems(exc.problems)
        return EXIT_BAD_INPUT
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    register_resolvers()
    ensure_published()

    if _starts_a_run(sys.argv[1:]):
        args = _hydra_args(sys.argv[1:])
        if not args.multirun:
            code = preflight(args.overrides, args.config_name or primary_config_name())
            if code != EXIT_OK:
                sys.exit(code)

    hydra.main(
        config_path=str(config_dir()), config_name=primary_config_name(), version_base="1.3"
    )(run_task)()
    sys.exit(_exit_code())


# Hydra flags that print something and exit without running the task.
_PRINT_ONLY_FLAGS = frozenset(
    ["-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info"]
    + ["-sc", "--shell-completion"]
)


def _starts_a_run(argv: list[str]) -> bool:
    return not any(token.split("=")[0] in _PRINT_ONLY_FLAGS for token in argv)


def _hydra_args(argv: list[str]):
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_known_args(argv)[0]


def _exit_code() -> int:
    if _sweep_exit_codes:
        return max(_sweep_exit_codes)
    failed = [o for o in _outcomes if o.result.status != "completed"]
    if not failed:
        return EXIT_OK
    return EXIT_BAD_INPUT if any(o.bad_input for o in failed) else EXIT_RUN_FAILED
