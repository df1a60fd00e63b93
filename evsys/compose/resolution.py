"""A composed config resolved leaf by leaf, so one broken ``${…}`` does not hide the others, and
the walks over its nodes that composing shares; Hydra's and OmegaConf's errors in one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from evsys.compose.node_cache import yaml_error
from evsys.compose.nodes import MISSING
from evsys.errors import Problem


def resolve_config(
    cfg: DictConfig, sources: dict[str, str], problems: list[Problem]
) -> dict[str, Any]:
    """Resolve interpolations leaf by leaf, so one broken ``${…}`` does not hide the others."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException:
        container = _resolve_leafwise(cfg, problems, sources)
    reported = {problem.path for problem in problems}
    for path in _drop_missing(container, ""):
        if path not in reported:  # an interpolation that failed is reported already
            problems.append(
                Problem(
                    path=path,
                    message="required value is missing",
                    value=MISSING,
                    source=sources.get(path),
                )
            )
    return container


def _resolve_leafwise(
    cfg: DictConfig, problems: list[Problem], sources: dict[str, str]
) -> dict[str, Any]:
    out = OmegaConf.to_container(cfg, resolve=False)
    for path in leaf_paths(cfg, ""):
        try:
            value = OmegaConf.select(
                cfg, path, throw_on_missing=False, throw_on_resolution_failure=True
            )
        except OmegaConfBaseException as exc:
            raw = OmegaConf.select(cfg, path, throw_on_resolution_failure=False)
            problems.append(
                Problem(
                    path=path,
                    message=f"cannot resolve interpolation: {first_line(exc)}",
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


def _drop_missing(container: Any, prefix: str) -> Iterator[str]:
    """Remove ``???`` values, yielding their paths. A ``???`` is refused even where the schema
    has a default: Hydra would hand the run the marker itself, not the default."""
    if isinstance(container, dict):
        for key in list(container):
            if container[key] == MISSING:
                del container[key]
                yield f"{prefix}{key}"
            else:
                yield from _drop_missing(container[key], f"{prefix}{key}.")
    elif isinstance(container, list):
        for index, item in enumerate(container):
            yield from _drop_missing(item, f"{prefix.rstrip('.')}[{index}].")


def leaf_paths(node: Any, prefix: str) -> Iterator[str]:
    for path, _ in leaves(node, prefix):
        yield path


def leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted path, node) of every leaf under ``node``: values, lists and empty dicts. Walking
    the nodes themselves, rather than selecting each path again from the root, keeps a sweep's
    first arm cheap."""
    if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
        if len(node) == 0 and prefix:
            yield prefix, node
        for key in node:
            child = node._get_node(key)
            yield from leaves(child, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix, node


def _set_path(container: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        container = container[key]
    container[last] = value


def defaults_error(exc: BaseException) -> str:
    """Hydra's first line; for a config file that is not YAML, the file and line."""
    return yaml_error(exc) if isinstance(exc, yaml.YAMLError) else first_line(exc)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
