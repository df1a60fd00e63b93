"""Validate a composed configuration, reporting every problem at once.

Two passes over the same plain dict: the structure against :class:`ExperimentConfig`, then every
``{kind, params}`` envelope against its registry (is the kind known, do the params fit its
``Config``, does the backend run the algorithm). Each problem carries its dotted path, the bad
value, what was expected, the closest valid name and, when known, where the value came from.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from evsys.checks import check_run
from evsys.config import ExperimentConfig, ExtensionSpec
from evsys.errors import ConfigError, Problem, UnknownExtensionError
from evsys.registry import closest, registry_for, resolve_algorithm
from evsys.shorthand_forms import routed_recipe

Loc = tuple[str | int, ...]
SourceOf = Callable[[str], str | None]


def validate_experiment(
    raw: dict[str, Any],
    *,
    source_of: SourceOf | None = None,
    extra_problems: list[Problem] | None = None,
) -> ExperimentConfig:
    """Return the validated config, or raise one :class:`ConfigError` listing every problem."""
    problems = list(extra_problems or [])
    config: ExperimentConfig | None = None
    schema_problems = []
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        schema_problems += problems_from_validation_error(exc, ExperimentConfig)
    schema_problems += _extension_problems(raw)
    # A value composition already reported (e.g. a broken interpolation) shows up again as
    # missing: say it once.
    reported = {p.path for p in problems}
    problems += [p for p in schema_problems if p.path not in reported]
    if not problems and config is not None:
        # Checks of the whole run, once every part of it is known to be well formed.
        problems += check_run(config)
    if problems or config is None:
        raise ConfigError(_with_sources(_deduplicated(problems), source_of))
    return config


# -- pydantic errors → problems ------------------------------------------------------------


def problems_from_validation_error(
    exc: ValidationError, model: type[BaseModel], prefix: Loc = ()
) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = prefix + tuple(error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            owner = _model_at(model, tuple(error["loc"][:-1]))
            known = list(getattr(owner, "model_fields", {}))
            retired = getattr(owner, "retired_keys", {}).get(str(loc[-1]))
            problems.append(
                Problem(
                    path=dotted(loc),
                    message=f"no such key any more: {retired}" if retired else "unknown key",
                    value=error["input"],
                    expected=f"one of: {', '.join(known)}" if known else None,
                    suggestion=closest(str(loc[-1]), known),
                )
            )
        elif kind == "missing":
            problems.append(Problem(path=dotted(loc), message="required value is missing"))
        else:
            problems.append(
                Problem(
                    path=dotted(loc),
                    message=_strip_prefix(error["msg"]),
                    value=error.get("input"),
                    expected=_expected(error),
                )
            )
    return problems


def dotted(loc: Loc) -> str:
    """``("data", "transforms", 0, "kind")`` → ``data.transforms[0].kind``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _strip_prefix(message: str) -> str:
    # pydantic prefixes messages raised by validators with "Value error, "
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _expected(error: dict[str, Any]) -> str | None:
    ctx = error.get("ctx") or {}
    if "expected" in ctx:
        return str(ctx["expected"])
    bounds = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    for key, symbol in bounds.items():
        if key in ctx:
            bound = ctx[key]
            return (
                f"a number {symbol} {bound:g}"
                if isinstance(bound, float)
                else f"a number {symbol} {bound}"
            )
    return None


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model found by walking ``loc`` down from ``model`` (None: not a model there)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        current = _model_in(field.annotation)
        if current is None:
            return None
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


# -- {kind, params} envelopes ----------------------------------------------------------------


def _extension_problems(raw: dict[str, Any]) -> Iterator[Problem]:
    for loc, spec_type, value in _specs_in(ExperimentConfig, raw, ()):
        yield from _spec_problems(loc, spec_type, value)
    recipes = list(_recipes(raw.get("algorithm")))
    backend = raw.get("backend")
    engine = backend.get("kind") if isinstance(backend, dict) else None
    if _known("backend", engine):
        for loc, recipe in recipes:  # nested recipes (combo's phases) run on the same backend
            yield from _runs_on(recipe, engine, loc)
    if raw.get("continual") is not None:
        for loc, recipe in recipes:
            yield from _continual_stage_problems(recipe, loc)


def _recipes(algorithm: Any) -> Iterator[tuple[Loc, str]]:
    """The run's recipe and the recipes nested in its params (combo's phases), each of a known
    kind, with its location."""
    algorithm = routed_recipe(algorithm)  # mock_sft is sft (AlgorithmConfig reads it so)
    recipe = algorithm.get("kind") if isinstance(algorithm, dict) else None
    if not _known("algorithm", recipe):
        return
    yield ("algorithm",), recipe
    params = algorithm.get("params")
    config = registry_for("algorithm").config_class(recipe)
    if isinstance(params, dict) and config is not None:
        for loc, spec_type, value in _specs_in(config, params, ("algorithm", "params")):
            nested = routed_recipe(value).get("kind") if isinstance(value, dict) else None
            if spec_type.registry_kind == "algorithm" and _known("algorithm", nested):
                yield loc, nested


def _continual_stage_problems(recipe: str, loc: Loc) -> Iterator[Problem]:
    """A continual stage starts from the previous stage's final checkpoint and is scored on its
    own: a recipe that moves no weights (``updates_weights = False``: gepa_prompt) has no
    checkpoint to hand on, and the prompt it tunes would be scored nowhere."""
    if getattr(registry_for("algorithm").get(recipe), "updates_weights", True):
        return
    yield Problem(
        path=dotted(loc + ("kind",)),
        message=f"'{recipe}' cannot run in a continual stage: it moves no weights, and continual "
        "stages pass on and score only checkpoints (each stage starts from the previous "
        "stage's final checkpoint), so what it tunes would be lost",
        value=recipe,
        expected="a recipe that trains weights (e.g. sft), or no `continual` to tune a prompt",
    )


def _runs_on(recipe: str, backend: str, loc: Loc) -> Iterator[Problem]:
    try:
        resolve_algorithm(recipe, backend)
    except UnknownExtensionError as exc:
        for p in exc.problems:
            yield Problem(**{**p.__dict__, "path": dotted(loc + ("kind",))})


def _specs_in(model: type[BaseModel], raw: Any, loc: Loc) -> Iterator[tuple[Loc, type, Any]]:
    """Every ``{kind, params}`` envelope in ``raw``, with its location and envelope type."""
    if not isinstance(raw, dict):
        return
    for name, field in model.model_fields.items():
        if name not in raw:
            continue
        inner = _model_in(field.annotation)
        if inner is None:
            continue
        value = raw[name]
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            item_loc = loc + (name,) + (() if index is None else (index,))
            if issubclass(inner, ExtensionSpec):
                yield item_loc, inner, item
            yield from _specs_in(inner, item, item_loc)


def envelope_problems(spec: ExtensionSpec, loc: Loc) -> list[Problem]:
    """What is wrong with one ``{kind, params}`` envelope outside a run's config (``evsys eval
    model``'s metrics): an unknown kind, bad params, and the same for the envelopes nested in
    its params (a metric's judge client)."""
    return list(_spec_problems(loc, type(spec), spec.model_dump()))


def _spec_problems(loc: Loc, spec_type: type[ExtensionSpec], value: Any) -> Iterator[Problem]:
    if not isinstance(value, dict):
        return  # the structural pass already reported it
    registry = registry_for(spec_type.registry_kind)
    if spec_type.registry_kind == "algorithm":
        value = routed_recipe(value)
    kind = value.get("kind", spec_type.model_fields["kind"].default)
    if not isinstance(kind, str):
        return
    if kind not in registry:
        yield from registry.unknown(kind, path=dotted(loc + ("kind",))).problems
        return
    params = value.get("params") or {}
    if not isinstance(params, dict):
        return
    config = registry.config_class(kind)
    if config is None:
        for key in params:
            yield Problem(
                path=dotted(loc + ("params", key)),
                message=f"{registry.kind} '{kind}' takes no params",
                value=params[key],
            )
        return
    try:
        config.model_validate(params)
    except ValidationError as exc:
        yield from problems_from_validation_error(exc, config, prefix=loc + ("params",))
    # Envelopes nested in params, such as the verifier of an RL recipe.
    for nested in _specs_in(config, params, loc + ("params",)):
        yield from _spec_problems(*nested)


def _known(kind: str, name: Any) -> bool:
    return isinstance(name, str) and name in registry_for(kind)


def _deduplicated(problems: list[Problem]) -> list[Problem]:
    seen, unique = set(), []
    for p in problems:
        key = (p.path, p.message)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _with_sources(problems: list[Problem], source_of: SourceOf | None) -> list[Problem]:
    if source_of is None:
        return problems
    out = []
    for p in problems:
        if p.source is None and p.path:
            p = Problem(**{**p.__dict__, "source": source_of(p.path)})
        out.append(p)
    return out
