"""Hydra's file and package config sources, each file's node from evsys's node cache.

They read and find files exactly as Hydra's ``file://`` and ``pkg://`` sources do; only the
parse is replaced by :func:`evsys.compose.node_cache.yaml_node`, which serves the node of a text
it has seen before from memory or from disk. The evsys app's search path uses them in place of
Hydra's (see :mod:`.search_path`), so that start-up and every arm of a multirun compose without
parsing YAML again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra._internal.core_plugins.importlib_resources_config_source import (
    ImportlibResourcesConfigSource,
)
from hydra.errors import ConfigCompositionException
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource

from evsys.compose.node_cache import yaml_node
from evsys.paths import display_path

# Hydra reads a config's ``# @package`` header from its first 512 characters.
_HEADER_CHARS = 512


class CachedFileConfigSource(FileConfigSource):
    @staticmethod
    def scheme() -> str:
        return "evsys-file"

    @classmethod
    def url(cls, folder: Path | str) -> str:
        return f"{cls.scheme()}://{folder}"

    def load_config(self, config_path: str) -> ConfigResult:
        full_path = os.path.realpath(
            os.path.join(self.path, self._normalize_file_name(config_path))
        )
        try:
            text = Path(full_path).read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ConfigLoadError(f"Config not found : {full_path}") from None
        except (OSError, UnicodeDecodeError) as exc:  # a report naming the file, not a traceback
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            where = display_path(full_path)
            raise ConfigCompositionException(f"{where}: cannot read it: {reason}") from None
        return _result(self, full_path, text)


class CachedPackageConfigSource(ImportlibResourcesConfigSource):
    @staticmethod
    def scheme() -> str:
        return "evsys-pkg"

    def _read_config(self, res: Any) -> ConfigResult:
        return _result(self, str(res), res.read_text(encoding="utf-8"))


def _result(source: ConfigSource, file: str, text: str) -> ConfigResult:
    return ConfigResult(
        config=yaml_node(file, text),
        path=f"{source.scheme()}://{source.path}",
        provider=source.provider,
        header=ConfigSource._get_header_dict(text[:_HEADER_CHARS]),
    )
