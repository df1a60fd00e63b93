"""The registry as Hydra config groups.

Every registered algorithm, backend, data store, log store and inference client becomes an option
of its config group, served to Hydra by the ``evsys-registry`` config source; its node is ``{kind: <name>, params: <Config defaults>}``
with ``???`` for required fields. So ``algorithm=my_algo`` works as soon as ``my_algo`` is
registered, and ``algorithm.params.<field>=v`` needs no ``+``.

Building the nodes imports every extension and pydantic (≈ 0.15 s), which would make commands
that only print a config (``--cfg job``, ``--help``) slower than a plain Hydra app. So the nodes
are cached on disk, keyed by the files of every module that contributed one and by the installed
distributions (where plugins declare their entry points); any change rebuilds them. A process
that registered extensions of its own builds them from its live registries instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from evsys import __version__
from evsys.entry_points import install_key, installed_distributions
from evsys.files import write_text_atomically
from evsys.paths import PACKAGE_DIR, cache_dir

GroupNodes = dict[str, dict[str, dict[str, Any]]]
"""group → option → node."""

# Hydra group → registry kind. Metrics, verifiers and transforms are not groups: they appear in
# lists (eval.metrics, data.transforms), which Hydra's defaults lists cannot compose.
GROUP_KINDS = {
    "algorithm": "algorithm",
    "backend": "backend",
    "data_store": "data_store",
    "log_store": "log_store",
    "eval/inference": "inference_client",
}
PROVIDER = "evsys-registry"
MISSING = "???"


SCHEMA_NODE = "_schema"
"""A root config with every field of the schema that has a default, first in conf/config.yaml's
defaults list: so that any field, even one no conf file sets, takes an override without ``+``."""


def build_group_nodes() -> GroupNodes:
    """Nodes for every registered extension, from the live registries, and the schema node."""
    from evsys.config import ExperimentConfig
    from evsys.registry import registry_for
    from evsys.shorthand_forms import ROUTED_ALGORITHMS

    nodes: GroupNodes = {"": {SCHEMA_NODE: schema_defaults(ExperimentConfig)}}
    for group, kind in GROUP_KINDS.items():
        registry = registry_for(kind)
        nodes[group] = {
            name: {"kind": name, "params": config_defaults(registry.config_class(name))}
            for name in registry.names()
        }
    # The reference's routed recipe keys (algorithm=mock_sft) choose their recipe's node.
    for routed, recipe in ROUTED_ALGORITHMS.items():
        if recipe in nodes["algorithm"] and routed not in nodes["algorithm"]:
            nodes["algorithm"][routed] = nodes["algorithm"][recipe]
    return nodes


def config_defaults(config: type | None) -> dict[str, Any]:
    """A Config's fields as a plain dict: defaults where there are some, ``???`` elsewhere."""
    if config is None:
        return {}
    from pydantic_core import to_jsonable_python

    out = {}
    for name, field in config.model_fields.items():
        if field.is_required():
            out[name] = MISSING
        else:
            out[name] = to_jsonable_python(field.get_default(call_default_factory=True))
    return out


def schema_defaults(model: type) -> dict[str, Any]:
    """The fields of ``model`` that have defaults, nested models expanded; ``{kind, params}``
    envelopes and required fields are left to the group options that provide them."""
    from pydantic import BaseModel
    from pydantic_core import to_jsonable_python

    from evsys.config import ExtensionSpec

    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        nested = field.annotation if isinstance(field.annotation, type) else None
        if nested is not None and issubclass(nested, ExtensionSpec):
            continue
        if nested is not None and issubclass(nested, BaseModel):
            out[name] = schema_defaults(nested)
        elif not field.is_required():
            out[name] = to_jsonable_python(field.get_default(call_default_factory=True))
    return out


GROUP_NODES: GroupNodes = {}
"""The nodes Hydra's ``evsys-registry`` config source serves (see hydra_plugins/evsys_plugins)."""


def publish_group_nodes(nodes: GroupNodes) -> None:
    """Make ``nodes`` the registry's group options for every composition from now on."""
    GROUP_NODES.clear()
    GROUP_NODES.update(nodes)
    _published_at.clear()


_published_at: list[int] = []
"""The registry generation the published nodes were made at, when made by :func:`ensure_published`."""


def ensure_published() -> None:
    """Publish the registry's group nodes, unless those published still match the registries:
    from the cache on disk while this process registered nothing of its own, else built from the
    live registries."""
    if _published_at == [_registry_generation()]:
        return
    nodes = cached_group_nodes() if _registry_generation() == 0 else build_group_nodes()
    publish_group_nodes(nodes)
    # Building loads the registries, which may register more: read the generation after.
    _published_at[:] = [_registry_generation()]


def _registry_generation() -> int:
    # A process that has not imported the registry yet has registered nothing of its own.
    registry = sys.modules.get("evsys.registry")
    return registry.generation() if registry is not None else 0


# -- the on-disk cache --------------------------------------------------------------------------


def cached_group_nodes() -> GroupNodes:
    """The group nodes, from the cache when nothing they depend on has changed."""
    path = _cache_path()
    try:
        cached = json.loads(path.read_text())
        if cached["stamp"] == _stamp(cached["modules"]):
            return cached["nodes"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    nodes = build_group_nodes()
    modules = _contributing_modules()
    _write_atomically(path, {"stamp": _stamp(modules), "modules": modules, "nodes": nodes})
    return nodes


def _cache_path() -> Path:
    return cache_dir() / f"group-nodes-{install_key()}.json"


def _contributing_modules() -> list[str]:
    """Files of the modules that define extensions: editing one can change a node."""
    from evsys.registry import _IMPLEMENTATIONS, REGISTRIES

    files = {PACKAGE_DIR / "config.py", PACKAGE_DIR / "registry.py"}
    classes = [obj for r in REGISTRIES.values() for _, obj in r.items()]
    for obj in [*classes, *_IMPLEMENTATIONS.values()]:
        module = sys.modules.get(getattr(obj, "__module__", ""))
        if getattr(module, "__file__", None):
            files.add(Path(module.__file__))
    return sorted(str(p) for p in files)


def _stamp(module_files: list[str]) -> str:
    """Changes when a contributing module changes, or a plugin may have come, gone or changed."""
    parts = [__version__, sys.version]
    for name in module_files:
        try:
            st = os.stat(name)
            parts.append(f"{name}:{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append(f"{name}:gone")
    parts.extend(installed_distributions())
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def _write_atomically(path: Path, payload: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(payload))
    except OSError:
        pass  # a read-only home only costs speed
