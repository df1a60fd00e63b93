"""One registry per kind of extension.

An extension is a class registered under a name with a decorator::

    @register_metric("exact_match")
    class ExactMatch:
        class Config(BaseModel): ...
        def __init__(self, **params): self.cfg = self.Config(**params)

Built-in extensions are imported the first time a registry is read, and extensions from other
packages arrive through the entry-point group ``evsys.<plural>`` (e.g. ``evsys.algorithms``) or the
reference SDK's ``evsys_sdk.<plural>``, also loaded on first read, so ``import evsys`` stays fast.

Algorithms have one more level. A *recipe* (``sft``, ``rl``) owns the ``Config`` every backend
shares; a backend contributes its *implementation* with ``@register_algorithm("sft",
backend="mock")``. An algorithm registered without ``backend`` that has a ``train`` method runs on
every backend. ``resolve_algorithm(recipe, backend)`` picks the implementation.
"""

from __future__ import annotations

import difflib
import importlib
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from evsys.errors import EvsysError, Problem, UnknownExtensionError

T = TypeVar("T")


_generation = 0
_loading_depth = 0  # registries loading their built-in modules and entry points right now


def generation() -> int:
    """Changes whenever a registry (or algorithm implementation) changes, except by loading its
    built-in modules and entry points: lets derived views, such as the Hydra group options built
    from the registries, be rebuilt only when needed.

    0 while nothing was registered in this process but what loading gives, which is the same in
    every process of this environment: the views may then come from a cache on disk.
    """
    return _generation


def _changed(obj: Any = None) -> None:
    """Count a change, unless it is loading's, or ``obj`` is one of evsys's own extensions: a
    module of evsys's imported directly (``evsys.log_stores.dashboard`` for one function)
    registers what loading would, the same in every process."""
    global _generation
    if not _loading_depth and not _is_evsys_own(obj):
        _generation += 1


def _is_evsys_own(obj: Any) -> bool:
    return obj is not None and str(getattr(obj, "__module__", "")).startswith("evsys.")


def closest(name: str, candidates: list[str] | tuple[str, ...] | Any) -> str | None:
    """The candidate a misspelt ``name`` most likely meant, or None."""
    matches = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


class Registry:
    """Named extensions of one kind, filled by decorators, built-in modules and entry points."""

    def __init__(self, kind: str, plural: str, builtin_modules: tuple[str, ...] = ()):
        self.kind = kind
        self.plural = plural
        self.entry_point_group = f"evsys.{plural}"
        # Plugins written for the reference SDK declare its group; both are read.
        self.entry_point_groups = (self.entry_point_group, f"evsys_sdk.{plural}")
        self._builtin_modules = builtin_modules
        self._entries: dict[str, type] = {}
        self._loaded = False
        self._loading = False
        self._plugin_failures: dict[str, str] = {}

    # -- registration ------------------------------------------------------------------------

    def register(self, name: str, *, overwrite_ok: bool = False) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name")`` on a class (or factory function)."""

        def decorator(obj: T) -> T:
            self.add(name, obj, overwrite_ok=overwrite_ok)
            return obj

        return decorator

    def add(self, name: str, obj: Any, *, overwrite_ok: bool = False) -> None:
        existing = self._entries.get(name)
        replaces = existing is not None and existing is not obj
        if replaces and not _same_definition(existing, obj) and not overwrite_ok:
            raise EvsysError(
                f"A {self.kind} named '{name}' is already registered "
                f"({_qualname(existing)}); refusing to replace it with {_qualname(obj)}. "
                "Pick another name, or pass overwrite_ok=True to replace it on purpose."
            )
        if isinstance(obj, type):
            obj.name = name  # the registry key is the extension's name, as the reference says
        self._entries[name] = obj
        _changed(obj)

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)
        _changed()

    # -- lookup ------------------------------------------------------------------------------

    def get(self, name: str) -> Any:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise self.unknown(name) from None

    def unknown(self, name: str, path: str = "kind") -> UnknownExtensionError:
        """The error for a name this registry does not hold: lists what exists, the closest."""
        names = self.names()
        failure = self._plugin_failures.get(name)
        message = f"unknown {self.kind} '{name}'"
        if failure:
            message += f" (its plugin failed to load: {failure})"
        problem = Problem(
            path=path,
            message=message,
            value=name,
            expected=f"one of: {', '.join(names) or '(none registered)'}",
            suggestion=closest(name, names),
        )
        return UnknownExtensionError([problem])

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, Any]]:
        self._ensure_loaded()
        yield from sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def config_class(self, name: str) -> type | None:
        """The Pydantic model that validates ``params`` for ``name`` (None: takes no params)."""
        return getattr(self.get(name), "Config", None)

    def schema_for(self, name: str) -> dict[str, Any]:
        """JSON Schema of ``params`` for one extension: the legal mutation space."""
        config = self.config_class(name)
        if config is None:
            return {"type": "object", "properties": {}, "additionalProperties": False}
        return config.model_json_schema()

    def build(self, name: str, params: dict[str, Any] | None = None, **runtime: Any) -> Any:
        """Instantiate ``name`` with its ``params``; the class validates them with its Config."""
        return self.get(name)(**(params or {}), **runtime)

    # -- loading -----------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        global _loading_depth
        if self._loaded or self._loading:
            return
        self._loading = True
        _loading_depth += 1
        try:
            for module in self._builtin_modules:
                importlib.import_module(module)
            self._load_entry_points()
            self._loaded = True
        finally:
            self._loading = False
            _loading_depth -= 1

    def _load_entry_points(self) -> None:
        from evsys.entry_points import entry_points

        for ep in (ep for group in self.entry_point_groups for ep in entry_points(group)):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break every other command
                self._plugin_failures[ep.name] = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"evsys plugin '{ep.name}' ({ep.value}) in group {ep.group} failed to "
                    f"load and is skipped: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            # An entry point may name the class itself, or a module whose decorators register.
            if not isinstance(obj, types.ModuleType) and ep.name not in self._entries:
                self.add(ep.name, obj)

    def snapshot(self) -> dict[str, Any]:
        """State to restore after a test registers throw-away extensions."""
        # Load first: restoring an unloaded state could not re-import modules already imported.
        self._ensure_loaded()
        return {"entries": dict(self._entries), "loaded": self._loaded}

    def restore(self, state: dict[str, Any]) -> None:
        self._entries = dict(state["entries"])
        self._loaded = state["loaded"]
        _changed()


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _same_definition(a: Any, b: Any) -> bool:
    # Re-importing a module (pytest, importlib.reload) re-creates its classes: same place, same name.
    return _qualname(a) == _qualname(b)


ALGORITHMS = Registry("algorithm", "algorithms", ("evsys.algorithms",))
BACKENDS = Registry("backend", "backends", ("evsys.backends",))
METRICS = Registry("metric", "metrics", ("evsys.metrics",))
VERIFIERS = Registry("verifier", "verifiers", ("evsys.verifiers", "evsys.task_verifiers"))
TRANSFORMS = Registry("transform", "transforms", ("evsys.data.transforms",))
INFERENCE_CLIENTS = Registry(
    "inference_client",
    "inference",
    (
        "evsys.backends",
        "evsys.harness.openai_compatible",
        "evsys.clients.openai_chat",
        "evsys.clients.claude",
        "evsys.clients.gemini",
    ),
)
DATA_STORES = Registry("data_store", "data_stores", ("evsys.data.stores",))
LOG_STORES = Registry("log_store", "log_stores", ("evsys.log_stores",))
ENVIRONMENTS = Registry("environment", "environments", ("evsys.agents.environments",))
DEPLOYERS = Registry("deployer", "deployers", ("evsys.deploy.local", "evsys.deploy.fireworks"))
CALLBACKS = Registry("callback", "callbacks", ("evsys.callbacks.early_stopping",))

REGISTRIES: dict[str, Registry] = {
    r.kind: r
    for r in (
        ALGORITHMS,
        BACKENDS,
        METRICS,
        VERIFIERS,
        TRANSFORMS,
        INFERENCE_CLIENTS,
        DATA_STORES,
        LOG_STORES,
        ENVIRONMENTS,
        DEPLOYERS,
        CALLBACKS,
    )
}


def registry_for(kind: str) -> Registry:
    """The registry of ``kind`` (``algorithm``, ``log_store``, …; plural names work too)."""
    for registry in REGISTRIES.values():
        if kind in (registry.kind, registry.plural):
            return registry
    problem = Problem(
        path="kind",
        message=f"unknown extension kind '{kind}'",
        value=kind,
        expected=f"one of: {', '.join(REGISTRIES)}",
        suggestion=closest(kind, list(REGISTRIES) + [r.plural for r in REGISTRIES.values()]),
    )
    raise UnknownExtensionError([problem])


# -- algorithms: recipes and their per-backend implementations --------------------------------

_IMPLEMENTATIONS: dict[tuple[str, str], type] = {}


def register_algorithm(
    name: str, *, backend: str | None = None, overwrite_ok: bool = False
) -> Callable[[T], T]:
    """Register a recipe (``backend=None``) or a recipe's implementation on one backend."""
    if backend is None:
        return ALGORITHMS.register(name, overwrite_ok=overwrite_ok)

    def decorator(cls: T) -> T:
        key = (name, backend)
        existing = _IMPLEMENTATIONS.get(key)
        if existing is not None and not _same_definition(existing, cls) and not overwrite_ok:
            raise EvsysError(
                f"Backend '{backend}' already implements algorithm '{name}' with "
                f"{_qualname(existing)}; pass overwrite_ok=True to replace it."
            )
        _IMPLEMENTATIONS[key] = cls
        _changed(cls)
        return cls

    return decorator


def backends_supporting(recipe: str) -> list[str]:
    """Backends that can run ``recipe``: all of them for a backend-agnostic algorithm."""
    BACKENDS._ensure_loaded()
    recipe_cls = ALGORITHMS.get(recipe)
    if hasattr(recipe_cls, "train"):
        return BACKENDS.names()
    own = {b for (r, b) in _IMPLEMENTATIONS if r == recipe}
    return sorted(own | {b for b in BACKENDS.names() if _inherited(recipe_cls, b) is not None})


def resolve_algorithm(recipe: str, backend: str) -> type:
    """The class that runs ``recipe`` on ``backend``; a clear error when there is none.

    A recipe subclassing another (``class MyLoss(SFT)``) runs on the parent's implementation
    where that implementation takes recipe subclasses (its ``recipe_class`` attribute): it is
    handed the subclass, whose ``Config`` and overrides (``build_batch``, ``loss``) it uses."""
    recipe_cls = ALGORITHMS.get(recipe)
    BACKENDS._ensure_loaded()  # backends register their implementations when imported
    impl = _IMPLEMENTATIONS.get((recipe, backend))
    if impl is not None:
        return impl
    if hasattr(recipe_cls, "train"):
        return recipe_cls
    inherited = _inherited(recipe_cls, backend)
    if inherited is not None:
        return inherited
    supported = backends_supporting(recipe)
    raise UnknownExtensionError(
        [
            Problem(
                path="algorithm.kind",
                message=f"algorithm '{recipe}' has no implementation on backend '{backend}'",
                value=recipe,
                expected=f"a backend among: {', '.join(supported) or '(none)'}",
            )
        ]
    )


_INHERITED: dict[tuple[type, type], type] = {}


def _inherited(recipe_cls: type, backend: str) -> type | None:
    """The implementation of the nearest registered parent recipe on ``backend`` that takes
    recipe subclasses, bound to ``recipe_cls``; None when there is none."""
    for parent in recipe_cls.__mro__[1:]:
        name = getattr(parent, "name", None)
        impl = _IMPLEMENTATIONS.get((name, backend)) if isinstance(name, str) else None
        if impl is None or ALGORITHMS._entries.get(name) is not parent:
            continue
        if getattr(impl, "recipe_class", None) is None:
            return None  # the parent's implementation here runs only the parent itself
        key = (impl, recipe_cls)
        if key not in _INHERITED:
            _INHERITED[key] = type(
                impl.__name__,
                (impl,),
                {"recipe_class": recipe_cls, "__module__": impl.__module__},
            )
        return _INHERITED[key]
    return None


def _decorator_for(registry: Registry) -> Callable[..., Callable[[T], T]]:
    def register(name: str, *, overwrite_ok: bool = False) -> Callable[[T], T]:
        return registry.register(name, overwrite_ok=overwrite_ok)

    register.__doc__ = f"Register a {registry.kind} under ``name``."
    return register


register_backend = _decorator_for(BACKENDS)
register_metric = _decorator_for(METRICS)
register_verifier = _decorator_for(VERIFIERS)
register_transform = _decorator_for(TRANSFORMS)
register_inference = _decorator_for(INFERENCE_CLIENTS)
register_data_store = _decorator_for(DATA_STORES)
register_log_store = _decorator_for(LOG_STORES)
register_environment = _decorator_for(ENVIRONMENTS)
register_deployer = _decorator_for(DEPLOYERS)
register_callback = _decorator_for(CALLBACKS)
