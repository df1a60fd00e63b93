"""``evsys resume <sweep_dir>``: finish a sweep — completed arms are skipped, the rest re-run."""

from __future__ import annotations

import argparse
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
    task = list(master.hydra.overrides.task)
    hydra = [o for o in master.hydra.overrides.hydra if not o.startswith(_NOT_REPLAYED)]
    return ["--multirun", *task, *hydra, f"hydra.sweep.dir='{sweep_dir.resolve()}'"]


def execute(args: argparse.Namespace) -> int:
    if not (args.sweep_dir / "multirun.yaml").is_file():
        print(f"evsys resume: {args.sweep_dir} is not a sweep directory (no multirun.yaml)")
        return EXIT_BAD_INPUT
    from evsys.app import main

    main(replay_arguments(args.sweep_dir))  # exits with the sweep's code
    return 0
