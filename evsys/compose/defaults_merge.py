"""Hydra's merge of a defaults list, remembering which default (a conf file and group option, the
registry's defaults of an extension, Hydra's own config) set each value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.config_repository import IConfigRepository
from hydra.core.default_element import ResultDefault
from omegaconf import DictConfig, OmegaConf, flag_override, open_dict
from omegaconf.errors import OmegaConfBaseException

from evsys.compose import stored
from evsys.compose.nodes import PROVIDER
from evsys.compose.resolution import first_line, leaf_paths
from evsys.errors import ConfigError, Problem
from evsys.paths import display_path


def merge_defaults(
    loader: ConfigLoaderImpl, repo: IConfigRepository, defaults: list[ResultDefault]
) -> tuple[DictConfig, dict[str, str]]:
    """Hydra's merge of the defaults list, remembering which default set each value."""
    cfg = OmegaConf.create()
    sources: dict[str, str] = {}
    # As Hydra's own merge: each loaded config is fresh (its repository is this composition's
    # alone), so its nodes move into ``cfg`` rather than being deep-copied there.
    with flag_override(cfg, "no_deepcopy_set_nodes", True):
        for default in defaults:
            # Hydra 1.3's loader applies the package header and schema matching here.
            loaded = loader._load_single_config(default=default, repo=repo)
            origin = describe_default(default, loaded.provider, loaded.path)
            for path in leaf_paths(loaded.config, ""):  # before the merge moves its nodes
                if path.partition(".")[0] != "defaults" and ".defaults" not in path:
                    sources[path] = origin
            try:
                cfg.merge_with(loaded.config)
            except OmegaConfBaseException as exc:
                key = getattr(exc, "full_key", None) or "defaults"
                raise ConfigError(
                    [Problem(path=key, message=first_line(exc), source=origin)]
                ) from None
    with open_dict(cfg):
        cfg.pop("defaults", None)
    _strip_nested_defaults(cfg)
    return cfg, sources


def _strip_nested_defaults(cfg: Any) -> None:
    if isinstance(cfg, DictConfig) and not cfg._is_missing() and not cfg._is_none():
        with open_dict(cfg):
            if "defaults" in cfg and cfg._get_flag("HYDRA_REMOVE_TOP_LEVEL_DEFAULTS") is not None:
                cfg.pop("defaults")
        for _, value in cfg.items_ex(resolve=False):
            _strip_nested_defaults(value)


def describe_default(default: ResultDefault, provider: str, path: str | None) -> str:
    config_path = default.config_path or ""
    group, _, option = config_path.rpartition("/")
    choice = f"{group}={option}" if group else None
    if provider == PROVIDER:
        return f"registry defaults of {choice}"
    if provider == "hydra":
        return f"hydra's own config {config_path}"
    folder = stored.config_folder(path or "")
    if not path or folder is None:
        return f"{path}/{config_path}"
    # The experiments source serves experiment/<name> from <folder>/<name>.yaml.
    name = option if path.startswith("evsys-experiments://") else config_path
    where = display_path(Path(folder) / f"{name}.yaml")
    return f"{where} ({choice})" if choice and not default.primary else where
