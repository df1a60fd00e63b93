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
    from evsys.cli.reference_yaml import is_reference_file
    from evsys.errors import ConfigError
    from evsys.preflight import plan_sweep
    from evsys.report import format_problems

    if args.overrides and is_reference_file(args.overrides[0]):  # the reference's format
        from evsys.cli.reference_yaml import plan_file

        arms = plan_file(args.overrides[0], args.overrides[1:])
        return EXIT_BAD_INPUT if arms is None else _print_arms(arms, args.json, shared=False)
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
    return _print_arms(arms, args.json)


def _print_arms(arms, as_json: bool, *, shared: bool = True) -> int:
    """The plan's table (or JSON); ``shared=False`` leaves out the overrides every arm has (a
    reference file's whole config) from the table."""
    from evsys.sweep.plan import bad_arms
    from evsys.sweep.sweeper import format_bad_arms

    if as_json:
        entries = [
            {**arm.plan_entry(), "problems": [p.to_dict() for p in arm.problems]} for arm in arms
        ]
        print(json.dumps({"ok": not bad_arms(arms), "arms": entries}, indent=2, default=str))
    else:
        width = max((len(arm.name) for arm in arms), default=3)
        common = set.intersection(*(set(arm.overrides) for arm in arms)) if not shared else set()
        print(f"{'arm':<{width}}  {'config hash':<16}  overrides")
        for arm in arms:
            own = " ".join(line for line in arm.overrides if line not in common)
            print(f"{arm.name:<{width}}  {arm.config_hash or 'INVALID':<16}  {own}")
        print(f"\n{len(arms)} arms")
        if bad_arms(arms):
            print("\n" + format_bad_arms(arms), file=sys.stderr)
    return EXIT_BAD_INPUT if bad_arms(arms) else EXIT_OK
