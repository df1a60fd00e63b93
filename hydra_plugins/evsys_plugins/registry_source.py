"""Serve the registry's extensions as config group options (``algorithm=sft``, ``backend=mock``).

The nodes are published by evsys (:func:`evsys.compose.nodes.publish_group_nodes`) before Hydra
composes; each becomes an OmegaConf node only when a composition actually loads it, from the node
cache once it has been built. A process that did not start through evsys (a submitit worker
composing an arm) loads them on first use.
"""

from __future__ import annotations

import json

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import OmegaConf

from evsys.compose import nodes as published
from evsys.compose.node_cache import cached_node
from evsys.compose.value_overrides import install as install_override_rule


def _group_nodes() -> published.GroupNodes:
    if not published.GROUP_NODES:
        published.ensure_published()
    return published.GROUP_NODES


class RegistryConfigSource(ConfigSource):
    @staticmethod
    def scheme() -> str:
        return "evsys-registry"

    def load_config(self, config_path: str) -> ConfigResult:
        # An evsys config is being composed (in any process: a launcher's worker too): its
        # overrides are applied by evsys's rule, which validation applies (before they are).
        install_override_rule()
        group, _, name = config_path.removesuffix(".yaml").rpartition("/")
        node = _group_nodes().get(group, {}).get(name)
        if node is None:
            raise ConfigLoadError(f"no registered extension for {config_path}")
        return ConfigResult(
            config=cached_node(
                f"registry:{config_path}",
                json.dumps(node, sort_keys=True),
                lambda: OmegaConf.create(node),
            ),
            path=f"{self.scheme()}://",
            provider=self.provider,
            header=ConfigSource._get_header_dict(""),
        )

    def available(self) -> bool:
        return True

    def is_group(self, config_path: str) -> bool:
        groups = _group_nodes()
        return config_path == "" or any(
            g == config_path or g.startswith(config_path + "/") for g in groups
        )

    def is_config(self, config_path: str) -> bool:
        group, _, name = config_path.removesuffix(".yaml").rpartition("/")
        return name in _group_nodes().get(group, {})

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        found: set[str] = set()
        if results_filter in (None, ObjectType.CONFIG):
            found |= set(_group_nodes().get(config_path, {}))
        if results_filter in (None, ObjectType.GROUP):
            prefix = f"{config_path}/" if config_path else ""
            found |= {
                g[len(prefix) :].split("/")[0]
                for g in _group_nodes()
                if g and g.startswith(prefix)  # "" holds root configs (the schema node)
            }
        return sorted(found)
