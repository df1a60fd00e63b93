"""``evsys schema <kind> <name>`` and ``evsys schema --all``: the legal mutation space."""

from __future__ import annotations

import argparse
import json
from typing import Any

from evsys.registry import REGISTRIES, registry_for

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", help=f"one of: {', '.join(REGISTRIES)}")
    parser.add_argument("name", nargs="?", help="registered name, e.g. sft")
    parser.add_argument(
        "--all", action="store_true", help="the whole composable space: groups, options, fields"
    )


def full_schema() -> dict[str, Any]:
    """The config schema, every config group with its options, every extension's params."""
    from evsys.compose.compose import config_loader
    from evsys.compose.nodes import GROUP_KINDS
    from evsys.config import ExperimentConfig

    loader = config_loader()
    groups: dict[str, Any] = {}
    for group in _groups(loader):
        options = {}
        for option in loader.get_group_options(group):
            loaded = loader.repository.load_config(f"{group}/{option}")
            options[option] = {
                "source": f"{loaded.provider}: {loaded.path}",
                "node": _plain(loaded.config),
            }
        groups[group] = {"extension_kind": GROUP_KINDS.get(group), "options": options}
    extensions = {
        kind: {name: registry.schema_for(name) for name in registry.names()}
        for kind, registry in REGISTRIES.items()
    }
    return {
        "config": ExperimentConfig.model_json_schema(),
        "groups": groups,
        "extensions": extensions,
    }


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


def _groups(loader) -> list[str]:
    """Every config group except Hydra's own, nested groups included (eval/inference)."""
    from hydra.core.object_type import ObjectType

    found, pending = [], [""]
    while pending:
        parent = pending.pop()
        for child in loader.get_group_options(parent, results_filter=ObjectType.GROUP):
            path = f"{parent}/{child}" if parent else child
            if path != "hydra":
                found.append(path)
                pending.append(path)
    return sorted(found)


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=False)
