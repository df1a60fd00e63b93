"""Serve the registry's extensions as config group options (``algorithm=sft``, ``backend=mock``).

The nodes are published by evsys (:func:`evsys.compose.nodes.publish_group_nodes`) before Hydra
composes; each becomes an OmegaConf node only when a composition actually loads it.
"""

from __future__ import annotations

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import OmegaConf

from evsys.compose import nodes as published


class RegistryConfigSource(ConfigSource):
    @staticmethod
    def scheme() -> str:
        return "evsys-registry"

    def load_config(self, config_path: str) -> ConfigResult:
        group, _, name = config_path.removesuffix(".yaml").rpartition("/")
        node = published.GROUP_NODES.get(group, {}).get(name)
        if node is None:
            raise ConfigLoadError(f"no registered extension for {config_path}")
        return ConfigResult(
            config=OmegaConf.create(node),
            path=f"{self.scheme()}://",
            provider=self.provider,
            header=ConfigSource._get_header_dict(""),
        )

    def available(self) -> bool:
        return True

    def is_group(self, config_path: str) -> bool:
        groups = published.GROUP_NODES
        return config_path == "" or any(
            g == config_path or g.startswith(config_path + "/") for g in groups
        )

    def is_config(self, config_path: str) -> bool:
        group, _, name = config_path.removesuffix(".yaml").rpartition("/")
        return name in published.GROUP_NODES.get(group, {})

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        found: set[str] = set()
        if results_filter in (None, ObjectType.CONFIG):
            found |= set(published.GROUP_NODES.get(config_path, {}))
        if results_filter in (None, ObjectType.GROUP):
            prefix = f"{config_path}/" if config_path else ""
            found |= {
                g[len(prefix) :].split("/")[0]
                for g in published.GROUP_NODES
                if g.startswith(prefix)
            }
        return sorted(found)
