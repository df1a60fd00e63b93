"""How a value override changes a composed config: one rule for Hydra's strict composition (the
run, its launchers and workers) and evsys's lenient one (``evsys validate``, ``evsys plan``).

Hydra merges a dict value into the node it names, and after composing it closes the config
(struct mode): a merge may not add a key. A ``{kind, params}`` envelope's params are the fields
of its kind, so a dict that names another kind (``algorithm.params.verifier={kind: llm_judge,
params: {judge: …}}``) would be refused for keys the previous kind lacks ("Key 'judge' is not in
struct"), or, without struct mode, would keep the previous kind's params. So an envelope given
whole, with its ``kind``, replaces the envelope it names; any other value is applied as Hydra
applies it. Hydra's loader is given this rule (:func:`install`) wherever evsys composes, and the
lenient composition applies the same function, so both accept the same overrides; the keys a
merge would add, which struct mode refuses, are what :func:`keys_struct_refuses` names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

# Hydra's own function, kept before :func:`install` replaces it (a module executed again, as
# importlib.reload does, keeps the one it had rather than taking its own earlier rule for it).
_hydra_apply = globals().get(
    "_hydra_apply", ConfigLoaderImpl.__dict__["_apply_overrides_to_config"].__func__
)


def apply_value_overrides(overrides: list[Override], cfg: DictConfig) -> None:
    """Hydra's ``_apply_overrides_to_config``, except that an envelope given whole replaces."""
    for override in overrides:
        if replaces_envelope(override, cfg):
            # Replacing a key that exists is allowed in struct mode; the new node is the value.
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
        else:
            _hydra_apply([override], cfg)


def install() -> None:
    """Make Hydra's loader apply value overrides by :func:`apply_value_overrides`. Called only
    where an evsys config is composed (its entry points, its registry's config source), so
    another Hydra app in the same environment keeps Hydra's rule."""
    if (
        ConfigLoaderImpl.__dict__["_apply_overrides_to_config"].__func__
        is not apply_value_overrides
    ):
        ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply_value_overrides)


def replaces_envelope(override: Override, cfg: DictConfig) -> bool:
    """A plain override (no ``+``/``~``) of an existing ``{kind, …}`` node with a dict that has
    a ``kind`` of its own."""
    value = override.value()
    if override.type != OverrideType.CHANGE or override.package is not None:
        return False
    if not isinstance(value, dict) or "kind" not in value:
        return False
    node = _node(cfg, override.key_or_group)
    return _has_keys(node) and "kind" in node


def keys_struct_refuses(cfg: DictConfig, override: Override) -> list[str]:
    """The keys a plain override adds to ``cfg`` (its own key, or keys of a dict it merges): Hydra
    refuses them in struct mode, asking for ``+``."""
    key = override.key_or_group
    if override.type != OverrideType.CHANGE or replaces_envelope(override, cfg):
        return []
    if not key_exists(cfg, key):
        return [key]
    value = override.value()
    return list(_added_keys(_node(cfg, key), value, key)) if isinstance(value, dict) else []


def key_exists(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = _node(cfg, parent) if parent else cfg
    if OmegaConf.is_list(node):
        return leaf.isdigit() and int(leaf) < len(node)
    # `leaf in node` is False for a missing (???) value, which is a key all the same.
    return OmegaConf.is_dict(node) and leaf in node.keys()  # noqa: SIM118


def _added_keys(node: Any, value: dict[Any, Any], prefix: str) -> Iterator[str]:
    # A merge into a value, a null, a ??? or an interpolation replaces it: nothing is added.
    if not _has_keys(node):
        return
    for key, item in value.items():
        path = f"{prefix}.{key}"
        if key not in node.keys():  # noqa: SIM118 (a ??? value is a key too)
            yield path
        elif isinstance(item, dict):
            yield from _added_keys(node._get_node(key), item, path)


def _has_keys(node: Any) -> bool:
    """A dict node with keys of its own (not null, ``???`` or an interpolation)."""
    return (
        isinstance(node, DictConfig)
        and not node._is_missing()
        and not node._is_none()
        and not node._is_interpolation()
    )


def _node(cfg: DictConfig, key: str) -> Any:
    """The node at ``key`` as it is, unresolved (None where there is none)."""
    node: Any = cfg
    for part in key.split("."):
        if isinstance(node, DictConfig) and _has_keys(node) and part in node.keys():  # noqa: SIM118
            node = node._get_node(part)
        elif OmegaConf.is_list(node) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
        else:
            return None
    return node
