"""The search space: what the proposer may vary, and the pre-flight that keeps it legal.

Two ways to declare it, combinable:

- hydra-optuna-sweeper's grammar, parsed by Hydra's own override parser as that sweeper does:
  ``hydra.sweeper.params: {algorithm.params.learning_rate: "tag(log, interval(1e-5, 1e-2))",
  algorithm.params.lora_rank: "choice(4, 8, 16, 32)"}`` (a sweep override on the command line
  counts too: ``interval``, ``choice``, ``range``, a list ``a,b``);
- ``hydra.sweeper.space: [algorithm.params.learning_rate, …]``: each field's range comes from its
  registry schema — ``Literal``/enum and ``bool`` become a choice, ``int``/``float`` an interval
  within the field's ``gt/ge/lt/le`` bounds. A side without a bound is taken a factor of 10
  (floats) or 4 (ints) from the field's default; a positive range spanning a decade or more is
  sampled on a log scale.

Before any arm runs, :func:`check_space` composes and validates one arm per value of every
dimension (each interval at both ends) exactly like a hand-written sweep's arms: a space that
leaves the legal space (a learning rate interval reaching below 0) is refused with every problem.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from evsys.errors import ConfigError, Problem

FLOAT, INT, CHOICE = "float", "int", "choice"
_UNBOUNDED_FACTOR = {FLOAT: 10.0, INT: 4}


@dataclass(frozen=True)
class Dimension:
    """One key the proposer varies: an interval (float or int, maybe log) or a choice."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    source: str = ""

    def ends(self) -> list[Any]:
        """The values pre-flight checks: both ends of an interval, every choice."""
        if self.kind == CHOICE:
            return list(self.choices)
        return [self.low, self.high] if self.low != self.high else [self.low]

    def override(self, value: Any) -> str:
        return f"{self.key}={format_value(value)}"

    def describe(self) -> str:
        if self.kind == CHOICE:
            return f"{self.key}: one of {list(self.choices)}"
        scale = ", log scale" if self.log else ""
        return f"{self.key}: {self.kind} in [{self.low}, {self.high}]{scale}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "step": self.step,
            "choices": list(self.choices),
        }


def format_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back as the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    plain = text.replace("_", "").replace("-", "").replace(".", "").replace("/", "").isalnum()
    return text if plain else "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- from the grammar ----------------------------------------------------------------------------


def grammar_dimensions(
    lines: list[tuple[str, str]], resolved: dict[str, Any], problems: list[Problem]
) -> list[Dimension]:
    """``[(override line, where it came from)]`` → dimensions. ``resolved`` (the base config)
    tells an int field from a float one: ``interval(4, 64)`` on ``lora_rank`` samples ints."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from evsys.compose.compose import config_loader

    parser = OverridesParser.create(config_loader=config_loader())
    dimensions = []
    for line, source in lines:
        key = line.partition("=")[0]
        try:
            override = parser.parse_override(line)
        except Exception as exc:
            problems.append(Problem(path=key, message=_first(exc), value=line, source=source))
            continue
        key = override.get_key_element()
        if not override.is_sweep_override():
            problems.append(
                Problem(
                    path=key,
                    message="a search-space entry needs a range: interval(…), choice(…), "
                    "range(…) or a list",
                    value=line,
                    source=source,
                )
            )
            continue
        try:
            dimensions.append(_dimension(key, override, _lookup(resolved, key), source))
        except ValueError as exc:
            problems.append(Problem(path=key, message=str(exc), value=line, source=source))
    return dimensions


def _dimension(key: str, override: Any, base_value: Any, source: str) -> Dimension:
    value = override.value()
    if override.is_interval_sweep():
        low, high = float(value.start), float(value.end)
        if low > high:
            raise ValueError(f"the interval's start {low} is above its end {high}")
        log = "log" in value.tags
        if log and low <= 0:
            raise ValueError(f"a log-scale interval needs a start above 0, got {low}")
        is_int = isinstance(base_value, int) and not isinstance(base_value, bool)
        if is_int and low.is_integer() and high.is_integer():
            return Dimension(key, INT, int(low), int(high), log, source=source)
        return Dimension(key, FLOAT, low, high, log, source=source)
    if override.is_range_sweep() and not value.shuffle:
        start, stop, step = value.start, value.stop, value.step
        if any(isinstance(v, float) for v in (start, stop, step)):
            return Dimension(key, CHOICE, choices=tuple(override.sweep_iterator()), source=source)
        values = list(override.sweep_iterator())
        if not values:
            raise ValueError("the range holds no value")
        return Dimension(key, INT, values[0], values[-1], step=int(step), source=source)
    choices = tuple(override.sweep_iterator())
    if not choices:
        raise ValueError("the choice holds no value")
    return Dimension(key, CHOICE, choices=choices, source=source)


# -- from the registry schemas -------------------------------------------------------------------


def schema_dimensions(
    fields: list[str], resolved: dict[str, Any], problems: list[Problem]
) -> list[Dimension]:
    """Each dotted field of the composed config → a dimension from its pydantic field."""
    dimensions = []
    for dotted in fields:
        source = "hydra.sweeper.space"
        try:
            info = field_info(dotted, resolved)
            dimensions.append(_from_field(dotted, info, _lookup(resolved, dotted), source))
        except ValueError as exc:
            problems.append(Problem(path=dotted, message=str(exc), source=source))
    return dimensions


def field_info(dotted: str, resolved: dict[str, Any]) -> Any:
    """The pydantic FieldInfo of a dotted key of the experiment config: model fields are walked,
    and a ``{kind, params}`` envelope's ``params`` is the registered extension's Config."""
    from pydantic import BaseModel

    from evsys.compose.nodes import GROUP_KINDS
    from evsys.config import ExperimentConfig
    from evsys.registry import registry_for

    model: type[BaseModel] | None = ExperimentConfig
    parts = dotted.split(".")
    node: Any = resolved
    path: list[str] = []
    info = None
    for part in parts:
        if model is None:
            raise ValueError(f"'{'.'.join(path)}' has no schema fields below it")
        if part == "params" and "kind" in model.model_fields and isinstance(node, dict):
            group = "/".join(path)
            kind = GROUP_KINDS.get(group, path[-1] if path else "")
            try:
                model = registry_for(kind).config_class(node.get("kind"))
            except ConfigError:
                model = None
            if model is None:
                raise ValueError(f"no registered schema for the params of '{'.'.join(path)}'")
            path.append(part)
            node = node.get(part) if isinstance(node, dict) else None
            continue
        if part not in model.model_fields:
            raise ValueError(f"no field '{part}' in {model.__name__} (at '{'.'.join(path)}')")
        info = model.model_fields[part]
        model = _model_of(info.annotation)
        path.append(part)
        node = node.get(part) if isinstance(node, dict) else None
    if info is None:
        raise ValueError("empty field name")
    return info


def _model_of(annotation: Any) -> Any:
    from pydantic import BaseModel

    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _from_field(key: str, info: Any, default: Any, source: str) -> Dimension:
    annotation = _strip_optional(info.annotation)
    if typing.get_origin(annotation) is Literal:
        return Dimension(key, CHOICE, choices=typing.get_args(annotation), source=source)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return Dimension(key, CHOICE, choices=tuple(m.value for m in annotation), source=source)
    if annotation is bool:
        return Dimension(key, CHOICE, choices=(False, True), source=source)
    if annotation not in (int, float):
        raise ValueError(
            f"cannot derive a range for a field of type {annotation}; declare it in "
            "hydra.sweeper.params (interval(…), choice(…))"
        )
    kind = INT if annotation is int else FLOAT
    low, high, low_open, high_open = _bounds(info)
    if not isinstance(default, int | float) or isinstance(default, bool):
        default = info.default if isinstance(info.default, int | float) else None
    low, high = _fill_unbounded(kind, low, high, default, key)
    # An open bound (gt/lt) is not a legal value: step inside it.
    if kind == INT:
        low, high = int(math.floor(low)) + int(low_open), int(math.ceil(high)) - int(high_open)
    else:
        inset = (high - low) * 1e-6
        low, high = low + inset * low_open, high - inset * high_open
    if low > high:
        raise ValueError(f"the field's bounds leave no value between {low} and {high}")
    log = low > 0 and high / low >= 10  # a positive range over a decade or more: log scale
    return Dimension(key, kind, low, high, log, source=source)


def _strip_optional(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, _union_type()) and len(args) == 1:
        return args[0]
    return annotation


def _union_type() -> Any:
    import types

    return types.UnionType


def _bounds(info: Any) -> tuple[float | None, float | None, bool, bool]:
    low = high = None
    low_open = high_open = False
    for item in info.metadata:
        for attr, is_low, is_open in (("gt", 1, 1), ("ge", 1, 0), ("lt", 0, 1), ("le", 0, 0)):
            bound = getattr(item, attr, None)
            if bound is None:
                continue
            if is_low:
                low, low_open = float(bound), bool(is_open)
            else:
                high, high_open = float(bound), bool(is_open)
    return low, high, low_open, high_open


def _fill_unbounded(
    kind: str, low: float | None, high: float | None, default: Any, key: str
) -> tuple[float, float]:
    if low is not None and high is not None:
        return low, high
    if default is None or default == 0:
        raise ValueError(
            "the field has no bound on one side and no default to range around; declare its "
            "range in hydra.sweeper.params"
        )
    factor = _UNBOUNDED_FACTOR[kind]
    around = sorted([default / factor, default * factor])
    low_value = around[0] if low is None else max(low, min(around[0], default))
    high_value = around[1] if high is None else min(high, max(around[1], default))
    return low_value, high_value


# -- pre-flight ----------------------------------------------------------------------------------


def sample_arms(base: list[str], dimensions: list[Dimension]) -> list[list[str]]:
    """Arms that together set every dimension to each of its ends once: the first takes every
    dimension's first end, each other arm changes one dimension."""
    first = [d.override(d.ends()[0]) for d in dimensions]
    arms = [[*base, *first]]
    for position, dimension in enumerate(dimensions):
        for value in dimension.ends()[1:]:
            line = dimension.override(value)
            arms.append([*base, *first[:position], line, *first[position + 1 :]])
    return arms


def check_space(base: list[str], dimensions: list[Dimension], config_name: str | None) -> None:
    """Compose and validate the sample arms; ConfigError with every arm's problems, each
    named after the dimension's declaration."""
    from evsys.sweep.plan import bad_arms, preflight

    arms = preflight(sample_arms(base, dimensions), config_name=config_name)
    problems: list[Problem] = []
    for arm in bad_arms(arms):
        for problem in arm.problems:
            dimension = next((d for d in dimensions if d.key == problem.path), None)
            where = f"the search space ({dimension.describe()})" if dimension else "an arm"
            message = f"{problem.message} — {where} leaves the legal space"
            found = Problem(
                path=problem.path,
                message=message,
                value=problem.value,
                expected=problem.expected,
                source=dimension.source if dimension else problem.source,
            )
            if found not in problems:
                problems.append(found)
    if problems:
        raise ConfigError(problems, header="evsys: the evolve sweep's search space is illegal:")


def _lookup(node: Any, dotted: str) -> Any:
    for part in dotted.lstrip("+~").split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _first(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
