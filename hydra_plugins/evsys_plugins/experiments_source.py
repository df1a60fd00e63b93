"""Serve an ``experiments/`` folder as Hydra's ``experiment`` config group.

Experiment files live in a top-level ``experiments/`` folder (not ``conf/experiment/``), where a
researcher expects them; this source maps ``experiment/<name>`` to ``<folder>/<name>.yaml``, read
through the node cache as the conf folders are.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigResult

from hydra_plugins.evsys_plugins.cached_sources import CachedFileConfigSource

GROUP = "experiment"


class ExperimentsConfigSource(CachedFileConfigSource):
    @staticmethod
    def scheme() -> str:
        return "evsys-experiments"

    @staticmethod
    def _inside(config_path: str) -> str | None:
        """``experiment/x`` → ``x``; None for paths outside the experiment group."""
        if config_path == GROUP:
            return ""
        if config_path.startswith(GROUP + "/"):
            return config_path[len(GROUP) + 1 :]
        return None

    def load_config(self, config_path: str) -> ConfigResult:
        inner = self._inside(config_path)
        return super().load_config(inner if inner is not None else f"\0{config_path}")

    def available(self) -> bool:
        return Path(self.path).is_dir()

    def is_group(self, config_path: str) -> bool:
        if config_path == "":
            return self.available()
        inner = self._inside(config_path)
        return inner is not None and super().is_group(inner)

    def is_config(self, config_path: str) -> bool:
        inner = self._inside(config_path)
        return bool(inner) and super().is_config(inner)

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        wants_groups = results_filter in (None, ObjectType.GROUP)
        if config_path == "":
            return [GROUP] if wants_groups and self.available() else []
        if self._inside(config_path) != "" or results_filter == ObjectType.GROUP:
            return []  # experiments are one flat folder: no nested groups
        return sorted(p.stem for p in Path(self.path).glob("*.yaml"))
