"""``evsys resume <sweep_dir>``: finish a sweep — completed arms are skipped, the rest re-run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2
# Hydra adds these itself, or they are what resume sets.
_NOT_REPLAYED = ("hydra.mode=", "hydra.sweep.dir=")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory (holds multirun.yaml)")


def replay_arguments(sweep_dir: Path) -> list[str]:
    """The command line that re-runs the sweep of ``sweep_dir`` into the same directory."""
    from omegaconf import OmegaConf

    master = OmegaConf.load(sweep_dir / "multirun.yaml")
    # As typed: an override may hold an interpolation (${now:…}) that only its run resolves.
    overrides = OmegaConf.to_container(master.hydra.overrides, resolve=False)
    task = list(overrides["task"])
    hydra = [o for o in overrides["hydra"] if not o.startswith(_NOT_REPLAYED)]
    config_name = OmegaConf.select(master, "hydra.job.config_name", default=None)
    # The primary config the sweep was composed from (`evsys run file.yaml` names base.yaml).
    primary = ["--config-name", config_name] if config_name else []
    return [*primary, "--multirun", *task, *hydra, f"hydra.sweep.dir='{sweep_dir.resolve()}'"]


def not_replayable(sweep_dir: Path) -> str | None:
    """Why re-running the sweep of ``sweep_dir`` would not finish it, or None when it would.

    Only a sweeper that proposes the same arms in the same order when run again (evsys's, or
    Hydra's basic sweeper) can be resumed; Optuna proposes each trial from the results before it.
    """
    from omegaconf import OmegaConf

    from evsys.sweep.foreign import REPLAYABLE_SWEEPERS

    sweeper = OmegaConf.select(
        OmegaConf.load(sweep_dir / "multirun.yaml"), "hydra.sweeper._target_"
    )
    if sweeper in REPLAYABLE_SWEEPERS:
        return None
    return (
        f"evsys resume: cannot resume {sweep_dir}: its sweeper ({sweeper}) chooses each arm from "
        "the results of the arms before it, so running it again would not repeat these arms.\n"
        f"  `evsys results {sweep_dir}` shows what the sweep found. To go on optimising, start a "
        "new sweep; with Optuna, set hydra.sweeper.storage (e.g. sqlite:///study.db) and "
        "hydra.sweeper.study_name so that the study carries on from the trials stored there."
    )


def execute(args: argparse.Namespace) -> int:
    if not (args.sweep_dir / "multirun.yaml").is_file():
        print(f"evsys resume: {args.sweep_dir} is not a sweep directory (no multirun.yaml)")
        return EXIT_BAD_INPUT
    reason = not_replayable(args.sweep_dir)
    if reason:
        print(reason, file=sys.stderr)
        return EXIT_BAD_INPUT
    from evsys.app import main

    main(replay_arguments(args.sweep_dir))  # exits with the sweep's code
    return 0
