"""Compose a config the way Hydra does, but collect every problem instead of stopping at the first.

Hydra stops at the first unknown override key or group option. Before a run starts (and for
``evsys validate``), evsys composes the same defaults list with Hydra's own loader, but leniently:
unknown group options are reported and skipped, override keys that do not exist are still set
(so the schema can name them, with a "did you mean"), and every value remembers where it came
from — a command-line override, or which conf file and group option — so a report can say so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.config_repository import IConfigRepository
from hydra._internal.defaults_list import create_defaults_list
from hydra._internal.utils import create_config_search_path
from hydra.core.default_element import ResultDefault
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from evsys.compose.nodes import MISSING, PROVIDER, build_group_nodes, publish_group_nodes
from evsys.compose.resolvers import register_resolvers
from evsys.config import ExperimentConfig
from evsys.errors import ConfigError, Problem
from evsys.paths import config_dir
from evsys.registry import closest
from evsys.validation import validate_experiment

CONFIG_NAME = "config"


def compose_and_validate(
    overrides: list[str] | tuple[str, ...] = (), config_name: str = CONFIG_NAME
) -> tuple[Composition, ExperimentConfig]:
    """Compose leniently, then validate; one :class:`ConfigError` lists every problem of both."""
    composition = compose(overrides, config_name)
    if composition.hydra is None:  # the defaults list itself failed: nothing to validate
        raise ConfigError(composition.problems)
    config = validate_experiment(
        composition.config, source_of=composition.source_of, extra_problems=composition.problems
    )
    return composition, config


@dataclass
class Composition:
    """A composed config, where each of its values came from, and what went wrong composing it."""

    config: dict[str, Any]
    """Resolved, without the ``hydra`` node and without values still missing (``???``)."""
    sources: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    choices: dict[str, str | None] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    hydra: DictConfig | None = None

    def source_of(self, path: str) -> str | None:
        """Where the value at ``path`` (or its nearest composed parent) came from."""
        key = path.replace("[", ".").replace("]", "")
        while key:
            if key in self.sources:
                return self.sources[key]
            # A dict the schema wanted as a list element (or a parent of values from one place).
            inside = {v for k, v in self.sources.items() if k.startswith(key + ".")}
            if len(inside) == 1:
                return inside.pop()
            key = key.rpartition(".")[0]
        return None


def compose(
    overrides: list[str] | tuple[str, ...] = (), config_name: str = CONFIG_NAME
) -> Composition:
    """Compose ``config_name`` with ``overrides``, leniently (see the module docstring)."""
    register_resolvers()
    loader = config_loader()
    problems: list[Problem] = []
    parsed = _parse(overrides, problems)
    parsed = [o for o in parsed if _group_choice_is_known(o, loader, problems)]
    lines = [o.input_line for o in parsed]
    try:
        # As Hydra's own loader does: one caching repository for the defaults list and the merge.
        parsed, repo = loader._parse_overrides_and_create_caching_repo(config_name, lines)
        defaults = create_defaults_list(
            repo=repo,
            config_name=config_name,
            overrides_list=parsed,
            prepend_hydra=True,
            skip_missing=False,
        )
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        problems.append(Problem(path="defaults", message=_first_line(exc)))
        return Composition(config={}, problems=problems, overrides=list(overrides))

    cfg, sources = _merge_defaults(loader, repo, defaults.defaults)
    _apply_overrides(cfg, defaults.config_overrides, sources, problems)
    with open_dict(cfg.hydra):
        cfg.hydra.runtime.choices.update(defaults.overrides.known_choices)
    # Values such as ${hydra:runtime.choices.model} resolve as they do in a real run.
    HydraConfig.instance().set_config(cfg)
    hydra_node = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    config = _resolve(cfg, sources, problems)
    return Composition(
        config=config,
        sources=sources,
        problems=problems,
        choices=dict(defaults.overrides.known_choices),
        overrides=list(overrides),
        hydra=hydra_node,
    )


def config_loader() -> ConfigLoaderImpl:
    """Hydra's loader over evsys's search path (bundled conf, the project's conf and experiments),
    with every extension registered so far as a group option."""
    publish_group_nodes(build_group_nodes())
    return _loader_for(str(Path.cwd()))


@cache
def _loader_for(cwd: str) -> ConfigLoaderImpl:
    # The search path depends on the working directory (its conf/ and experiments/).
    return ConfigLoaderImpl(config_search_path=create_config_search_path(str(config_dir())))


# -- overrides ---------------------------------------------------------------------------------


def _parse(lines: list[str] | tuple[str, ...], problems: list[Problem]) -> list[Override]:
    parser = OverridesParser.create()
    parsed = []
    for line in lines:
        try:
            override = parser.parse_override(line)
        except HydraException as exc:
            problems.append(
                Problem(
                    path=line.partition("=")[0].lstrip("+~"),
                    message=f"cannot parse override: {_first_line(exc)}",
                    value=line,
                    source=f"override '{line}'",
                )
            )
            continue
        if not override.key_or_group:
            problems.append(
                Problem(
                    path="",
                    message="override has no key before '='",
                    value=line,
                    source=f"override '{line}'",
                )
            )
            continue
        if override.is_sweep_override():
            problems.append(
                Problem(
                    path=override.key_or_group,
                    message="several values in a single run; add --multirun to sweep them",
                    value=override.value(),
                    source=f"override '{line}'",
                )
            )
            continue
        parsed.append(override)
    return parsed


def _group_choice_is_known(
    override: Override, loader: ConfigLoaderImpl, problems: list[Problem]
) -> bool:
    group = override.key_or_group
    if override.is_delete() or not loader.repository.group_exists(group):
        return True
    choice = override.value()
    if not isinstance(choice, str):
        return True  # null (no option) or a list (multi-select): Hydra checks those
    options = loader.get_group_options(group)
    if choice in options:
        return True
    problems.append(
        Problem(
            path=group.replace("/", "."),
            message=f"unknown option '{choice}' for config group '{group}'",
            value=choice,
            expected=f"one of: {', '.join(options)}",
            suggestion=closest(choice, options),
            source=f"override '{override.input_line}'",
        )
    )
    return False


def _apply_overrides(
    cfg: DictConfig, overrides: list[Override], sources: dict[str, str], problems: list[Problem]
) -> None:
    # Unlike Hydra, let an override add a key that does not exist: the schema then reports it
    # with its closest valid name. Hydra's own node stays strict: its schema is Hydra's.
    OmegaConf.set_struct(cfg, False)
    OmegaConf.set_struct(cfg.hydra, True)
    for override in overrides:
        try:
            ConfigLoaderImpl._apply_overrides_to_config([override], cfg)
        except (HydraException, OmegaConfBaseException) as exc:
            problems.append(
                Problem(
                    path=override.key_or_group,
                    message=_first_line(exc),
                    value=override.value(),
                    source=f"override '{override.input_line}'",
                )
            )
            continue
        key = override.key_or_group
        for path in [k for k in sources if k == key or k.startswith(key + ".")]:
            del sources[path]
        node = OmegaConf.select(cfg, key, throw_on_missing=False, throw_on_resolution_failure=False)
        for path in _leaf_paths(node, key) if OmegaConf.is_config(node) else [key]:
            sources[path] = f"override '{override.input_line}'"


# -- defaults ----------------------------------------------------------------------------------


def _merge_defaults(
    loader: ConfigLoaderImpl, repo: IConfigRepository, defaults: list[ResultDefault]
) -> tuple[DictConfig, dict[str, str]]:
    """Hydra's merge of the defaults list, remembering which default set each value."""
    cfg = OmegaConf.create()
    sources: dict[str, str] = {}
    for default in defaults:
        # Hydra 1.3's loader applies the package header and schema matching here.
        loaded = loader._load_single_config(default=default, repo=repo)
        cfg.merge_with(loaded.config)
        origin = _describe(default, loaded.provider, loaded.path)
        for path in _leaf_paths(loaded.config, ""):
            if path.partition(".")[0] != "defaults" and ".defaults" not in path:
                sources[path] = origin
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


def _describe(default: ResultDefault, provider: str, path: str | None) -> str:
    config_path = default.config_path or ""
    group, _, option = config_path.rpartition("/")
    choice = f"{group}={option}" if group else None
    if provider == PROVIDER:
        return f"registry defaults of {choice}"
    if provider == "hydra":
        return f"hydra's own config {config_path}"
    if path and path.startswith("evsys-experiments://"):
        file = Path(path.removeprefix("evsys-experiments://")) / f"{option}.yaml"
    elif path and path.startswith("file://"):
        file = Path(path.removeprefix("file://")) / f"{config_path}.yaml"
    else:
        return f"{path}/{config_path}"
    where = _display_path(file)
    return f"{where} ({choice})" if choice and not default.primary else where


def _display_path(file: Path) -> str:
    try:
        return os.path.relpath(file)
    except ValueError:
        return str(file)


# -- resolution --------------------------------------------------------------------------------


def _resolve(cfg: DictConfig, sources: dict[str, str], problems: list[Problem]) -> dict[str, Any]:
    """Resolve interpolations leaf by leaf, so one broken ``${…}`` does not hide the others."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException:
        container = _resolve_leafwise(cfg, problems, sources)
    _drop_missing(container, "")
    return container


def _resolve_leafwise(
    cfg: DictConfig, problems: list[Problem], sources: dict[str, str]
) -> dict[str, Any]:
    out = OmegaConf.to_container(cfg, resolve=False)
    for path in _leaf_paths(cfg, ""):
        try:
            value = OmegaConf.select(
                cfg, path, throw_on_missing=False, throw_on_resolution_failure=True
            )
        except OmegaConfBaseException as exc:
            raw = OmegaConf.select(cfg, path, throw_on_resolution_failure=False)
            problems.append(
                Problem(
                    path=path,
                    message=f"cannot resolve interpolation: {_first_line(exc)}",
                    value=raw if raw is not None else _raw_value(cfg, path),
                    source=sources.get(path),
                )
            )
            value = MISSING
        _set_path(out, path, OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
    return out


def _raw_value(cfg: DictConfig, path: str) -> Any:
    parent, _, key = path.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return node._get_node(key)._value() if node is not None else None


def _drop_missing(container: Any, prefix: str) -> None:
    """Remove ``???`` values: the schema then reports each as a required value."""
    if isinstance(container, dict):
        for key in list(container):
            if container[key] == MISSING:
                del container[key]
            else:
                _drop_missing(container[key], f"{prefix}{key}.")
    elif isinstance(container, list):
        for item in container:
            _drop_missing(item, prefix)


def _leaf_paths(node: Any, prefix: str) -> Iterator[str]:
    if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
        if len(node) == 0 and prefix:
            yield prefix
        for key in node:
            child = node._get_node(key)
            yield from _leaf_paths(child, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix


def _set_path(container: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        container = container[key]
    container[last] = value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
