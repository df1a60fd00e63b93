"""``evsys plan [overrides] [--json]``: the arms a ``--multirun`` would launch, run nothing."""

from __future__ import annotations

import argparse
import json
import sys

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, sweep values included")
    parser.add_argument("-m", "--multirun", action="store_true", help="accepted for symmetry")
    parser.add_argument("--json", action="store_true", help="machine-readable plan")


def execute(args: argparse.Namespace) -> int:
    from evsys.errors import ConfigError
    from evsys.preflight import plan_sweep
    from evsys.report import format_problems
    from evsys.sweep.plan import bad_arms
    from evsys.sweep.sweeper import format_bad_arms

    try:  # exactly what `python -m evsys --multirun` checks before it starts
        arms, settings = plan_sweep(args.overrides)
    except ConfigError as exc:
        if args.json:
            print(
                json.dumps(
                    {"ok": False, "arms": [], "problems": [p.to_dict() for p in exc.problems]},
                    indent=2,
                    default=str,
                )
            )
        print(format_problems(exc.problems, header=exc.header), file=sys.stderr)
        return EXIT_BAD_INPUT
    if settings.foreign_sweeper:  # its arms exist only once it runs
        note = (
            f"the sweeper {settings.foreign_sweeper} proposes its arms as it runs: evsys checks "
            "sample arms when the sweep starts, and each arm before it trains"
        )
        print(json.dumps({"ok": True, "arms": [], "note": note}) if args.json else note)
        return EXIT_OK
    if args.json:
        entries = [
            {**arm.plan_entry(), "problems": [p.to_dict() for p in arm.problems]} for arm in arms
        ]
        print(json.dumps({"ok": not bad_arms(arms), "arms": entries}, indent=2, default=str))
    else:
        width = max((len(arm.name) for arm in arms), default=3)
        print(f"{'arm':<{width}}  {'config hash':<16}  overrides")
        for arm in arms:
            print(
                f"{arm.name:<{width}}  {arm.config_hash or 'INVALID':<16}  {' '.join(arm.overrides)}"
            )
        print(f"\n{len(arms)} arms")
        if bad_arms(arms):
            print("\n" + format_bad_arms(arms), file=sys.stderr)
    return EXIT_BAD_INPUT if bad_arms(arms) else EXIT_OK
