"""The fast path of a sweep's arms: plain values set on the defaults already resolved, instead of
composing and resolving each arm again.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from hydra.core.override_parser.types import Override
from omegaconf import DictConfig

from evsys.compose.nodes import MISSING
from evsys.compose.resolution import leaves


def patch_resolved(
    base: dict[str, Any],
    reads: set[str] | None,
    base_sources: dict[str, str],
    overrides: list[Override],
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The fast path of a sweep: plain values set on the already resolved defaults.

    Exactly what composing and resolving again would give, for overrides that only replace a
    leaf value no interpolation reads. Anything else (adding, deleting, merging a dict, a value
    with an interpolation, a ``hydra.`` key, an unknown key) returns None: the full path.
    ``base``, ``reads``: the defaults resolved, and the paths their interpolations read.
    """
    if reads is None:
        return None
    updates = []
    for override in overrides:
        key, value = override.key_or_group, override.value()
        simple = override.type.name == "CHANGE" and override.package is None
        if not simple or key.split(".")[0] == "hydra":
            return None
        if isinstance(value, (dict, list)) or (isinstance(value, str) and "${" in value):
            return None
        if value == MISSING:  # the full path reports it
            return None
        parent, _, leaf = key.rpartition(".")
        node = _child(base, parent) if parent else base
        if not isinstance(node, dict) or leaf not in node or isinstance(node[leaf], (dict, list)):
            return None
        if any(r == key or key.startswith(r + ".") or r.startswith(key + ".") for r in reads):
            return None
        updates.append((parent, leaf, value, override.input_line))
    config = copy.deepcopy(base)
    sources = dict(base_sources)
    for parent, leaf, value, line in updates:
        (_child(config, parent) if parent else config)[leaf] = value
        sources[f"{parent}.{leaf}" if parent else leaf] = f"override '{line}'"
    return config, sources


def _child(container: dict[str, Any], dotted_path: str) -> Any:
    for part in dotted_path.split("."):
        if not isinstance(container, dict) or part not in container:
            return None
        container = container[part]
    return container


_NODE_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def interpolated_paths(cfg: DictConfig) -> set[str] | None:
    """Config paths that interpolations in ``cfg`` read; None if one is relative (``${.x}``)."""
    reads: set[str] = set()
    for _, node in leaves(cfg, ""):
        raw = node._value()
        if isinstance(raw, str) and "${" in raw:
            if "${." in raw:
                return None
            reads.update(_NODE_REFERENCE.findall(raw))
    return reads
