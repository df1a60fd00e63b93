"""``evsys schema <kind> <name>`` and ``evsys schema --all``: the legal mutation space."""

from __future__ import annotations

import argparse
import json

from evsys.compose.schema import full_schema
from evsys.registry import REGISTRIES, registry_for

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", help=f"one of: {', '.join(REGISTRIES)}")
    parser.add_argument("name", nargs="?", help="registered name, e.g. sft")
    parser.add_argument(
        "--all", action="store_true", help="the whole composable space: groups, options, fields"
    )


def execute(args: argparse.Namespace) -> int:
    from evsys.errors import ConfigError
    from evsys.report import print_problems

    if args.all:
        print(json.dumps(full_schema(), indent=2, default=str))
        return EXIT_OK
    if not (args.kind and args.name):
        print("evsys schema: give <kind> <name> (e.g. `evsys schema algorithm sft`) or --all")
        return EXIT_BAD_INPUT
    try:
        schema = registry_for(args.kind).schema_for(args.name)
    except ConfigError as exc:
        print_problems(exc.problems)
        return EXIT_BAD_INPUT
    print(json.dumps(schema, indent=2))
    return EXIT_OK
