"""The reference's registry helpers over evsys's registries: ``get_<kind>(name)``,
``list_<kind>s()`` and ``schema_for(kind, name)`` for its eight kinds.

``register_<kind>`` are evsys's own decorators (re-exported by the package). A name no registry
holds raises :class:`UnknownKeyError`, a ``KeyError`` whose message lists the known names, as the
reference's ``Registry.get`` does; it is also evsys's ``UnknownExtensionError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evsys.errors import Problem, UnknownExtensionError
from evsys.registry import Registry, registry_for


class UnknownKeyError(UnknownExtensionError, KeyError):
    """A registry miss: a ``KeyError`` (the reference's) and evsys's ``UnknownExtensionError``."""

    def __str__(self) -> str:
        # KeyError's own str() would quote the message; this reads as evsys's errors do.
        return self.args[0] if self.args else ""

    def __reduce__(self):
        return (_rebuild, (self.problems, self.header))


def _rebuild(problems: list[Problem], header: str | None) -> UnknownKeyError:
    return UnknownKeyError(problems, header=header)


def lookup(registry: Registry, name: str) -> Any:
    """``registry``'s entry ``name``; :class:`UnknownKeyError` listing the known names."""
    try:
        return registry.get(name)
    except UnknownExtensionError as exc:
        problems = [
            Problem(**{**p.__dict__, "message": f"{p.message}; known keys: {_names(p.expected)}"})
            if p.expected
            else p
            for p in exc.problems
        ]
        raise UnknownKeyError(problems) from None


def schema_for(kind: str, name: str) -> dict[str, Any]:
    """JSON Schema of the ``params`` of extension ``name`` of ``kind`` (``algorithm``,
    ``inference_client`` or ``inference``, ``data_store``, …): the legal mutation space."""
    try:
        registry = registry_for(kind)
    except UnknownExtensionError as exc:
        raise UnknownKeyError(exc.problems) from None
    lookup(registry, name)
    return registry.schema_for(name)


def _getter(kind: str) -> Callable[[str], Any]:
    def get(name: str) -> Any:
        return lookup(registry_for(kind), name)

    get.__doc__ = f"The {kind} registered as ``name``; KeyError listing the known names."
    return get


def _lister(kind: str) -> Callable[[], list[str]]:
    def names() -> list[str]:
        return registry_for(kind).names()

    names.__doc__ = f"The names of every registered {kind}, sorted."
    return names


get_algorithm = _getter("algorithm")
get_verifier = _getter("verifier")
get_metric = _getter("metric")
get_backend = _getter("backend")
get_inference = _getter("inference_client")
get_transform = _getter("transform")
get_data_store = _getter("data_store")
get_log_store = _getter("log_store")

list_algorithms = _lister("algorithm")
list_verifiers = _lister("verifier")
list_metrics = _lister("metric")
list_backends = _lister("backend")
list_inference = _lister("inference_client")
list_transforms = _lister("transform")
list_data_stores = _lister("data_store")
list_log_stores = _lister("log_store")


def _names(expected: str) -> str:
    return expected.removeprefix("one of: ")
