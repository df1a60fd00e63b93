"""The whole composable space as one JSON document: the config schema, every config group with
its options, every extension's params (``evsys schema --all``; the evolve sweeper's legal space).

Beside the composition it reads, below both the CLI that prints it and the sweeper that proposes
within it.
"""

from __future__ import annotations

from typing import Any

from evsys.registry import REGISTRIES


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
