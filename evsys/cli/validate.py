"""``evsys validate [overrides] [--all-experiments] [--json]``: check without running;
``evsys validate config.yaml [--deep]`` checks a file in the reference's format."""

from __future__ import annotations

import argparse
import json

from evsys.errors import ConfigError, Problem

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for a run")
    parser.add_argument(
        "--all-experiments",
        action="store_true",
        help="validate every experiment file (with the overrides applied to each)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report")
    parser.add_argument(
        "--deep",
        action="store_true",
        help="with a reference YAML file: every arm of its sweep, not only each run",
    )


def check(overrides: list[str]) -> list[Problem]:
    """Every problem of the config these overrides compose; empty when it is valid. The checks
    are a run's own (:func:`evsys.preflight.check_run`): what passes here, runs."""
    from evsys.preflight import check_run

    try:
        check_run(overrides)
    except ConfigError as exc:
        return exc.problems
    return []


def execute(args: argparse.Namespace) -> int:
    from evsys.cli.reference_yaml import is_reference_file
    from evsys.report import format_problems, problems_header

    if args.overrides and is_reference_file(args.overrides[0]):
        from evsys.cli.reference_yaml import validate_file

        path, overrides = args.overrides[0], args.overrides[1:]
        return validate_file(path, overrides, deep=args.deep, as_json=args.json)

    if args.all_experiments:
        from evsys.compose.compose import config_loader

        names = config_loader().get_group_options("experiment")
        targets = {name: [f"experiment={name}", *args.overrides] for name in names}
    else:
        targets = {"config": list(args.overrides)}
    results = {name: check(overrides) for name, overrides in targets.items()}
    ok = not any(results.values())

    if args.json:
        report = {
            name: {"ok": not problems, "problems": [p.to_dict() for p in problems]}
            for name, problems in results.items()
        }
        payload = (
            report["config"] if not args.all_experiments else {"ok": ok, "experiments": report}
        )
        print(json.dumps(payload, indent=2, default=str))
    else:
        for name, problems in results.items():
            label = f"experiment={name}" if args.all_experiments else "config"
            if problems:
                subject = label if args.all_experiments else "the config"
                print(format_problems(problems, header=problems_header(len(problems), subject)))
            else:
                print(f"evsys: {label if args.all_experiments else 'the config'} is valid")
    return EXIT_OK if ok else EXIT_BAD_INPUT
