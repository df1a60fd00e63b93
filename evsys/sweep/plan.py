"""A sweep's arms, named and validated before any of them starts.

The arms are Hydra's own: its override grammar (lists, ``range()``, ``glob()``, ``choice()``) and
``hydra.sweeper.params``, expanded in Hydra's order; evsys adds paired axes (keys that vary
together) and repeats over seeds. Every arm is composed and validated up front — the launcher may
be a cluster queue where a typo would surface hours later.

Composing each arm from scratch costs what Hydra's ``compose()`` costs (≈ 80 ms here). Arms that
choose the same config group options share one merged defaults list; only their value overrides
differ, so each arm costs a copy, the overrides and the validation.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.types import Glob

from evsys.compose.compose import (
    Defaults,
    apply_overrides,
    compose_defaults,
    config_groups,
    config_loader,
    split_overrides,
    validate_composition,
)
from evsys.compose.override_lines import parse_line
from evsys.compose.resolution import first_line
from evsys.config import ExperimentConfig
from evsys.errors import ConfigError, Problem
from evsys.run.record import config_hash, redact
from evsys.sweep.aggregate import group_id
from evsys.sweep.arm_names import PLACEHOLDER, name_arms


@dataclass
class Arm:
    """One cell of the sweep."""

    index: int
    overrides: list[str]
    name: str = ""
    config: ExperimentConfig | None = None
    config_hash: str | None = None
    group_id: str | None = None
    problems: list[Problem] = field(default_factory=list)
    resolved: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        return self.config.seed if self.config else None

    def plan_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dir": self.name,
            "overrides": self.overrides,
            "config_hash": self.config_hash,
            "group_id": self.group_id,
            "seed": self.seed,
        }


@dataclass
class SweepAxes:
    """What the sweep varies, beyond the command line's own sweep overrides."""

    params: dict[str, str] = field(default_factory=dict)
    """``hydra.sweeper.params``: key → Hydra sweep expression, crossed with the others."""
    paired: list[dict[str, str]] = field(default_factory=list)
    """Each dict is one axis whose keys vary together: ``{lr: "1e-4,3e-4", warmup: "0,0.1"}``."""
    arms: list[list[str]] = field(default_factory=list)
    """Explicit arms, each its own override lines (group choices included): the outermost axis,
    whose values need not share keys (the reference YAML's ``runs:`` list). An arm's lines come
    first, so the command line and the other axes override them."""
    n_repeats: int = 1
    """Repeat every arm over this many seeds (base_seed, base_seed + 1, …)."""
    base_seed: int | None = None


def enumerate_arms(arguments: list[str], axes: SweepAxes) -> list[list[str]]:
    """Every arm's overrides: explicit arms, then Hydra's order, paired axes, repeats.

    Raises ConfigError naming every line or axis that cannot be expanded, and when the sweep
    has no arm at all (``range(5,1)``, a ``glob()`` that matches nothing).
    """
    problems = settings_problems(axes)
    origins = {f"{key}={value}": "hydra.sweeper.params" for key, value in axes.params.items()}
    # As Hydra's basic sweeper: a key given again (the command line after hydra.sweeper.params)
    # replaces the earlier values and keeps the earlier position.
    expanded: dict[str, list[str]] = {}
    for line in [*origins, *arguments]:
        values = _expand(line, origins.get(line, f"override '{line}'"), problems)
        if values is not None:
            expanded[values[0].partition("=")[0]] = values
    paired = [_paired_axis(axis, problems) for axis in axes.paired]
    explicit = _explicit_axis(axes.arms, problems)
    arm_keys = [line.partition("=")[0] for arm in axes.arms for line in arm]
    repeats = _repeat_axis(axes, [*expanded, *arm_keys], problems)
    if problems:
        raise ConfigError(problems)
    # An explicit arm is the outermost axis and its lines come first: everything else (the
    # command line, the other axes) overrides them.
    arms = [
        [*own, *base, *itertools.chain.from_iterable(extra)]
        for own, base, *extra in itertools.product(
            explicit, *_hydra_order(list(expanded.values())), *paired, repeats
        )
    ]
    if not arms:
        raise ConfigError(
            Problem(path="", message="the sweep has no arm: an axis expands to no value")
        )
    return arms


def _hydra_order(expanded: list[list[str]]) -> list[list[list[str]]]:
    # Hydra's basic sweeper crosses the axes in command-line order: one product, one list per arm.
    return [[list(arm) for arm in itertools.product(*expanded)]]


def _expand(line: str, origin: str, problems: list[Problem]) -> list[str] | None:
    """The ``key=value`` lines one override (or ``hydra.sweeper.params`` entry) stands for."""
    key = line.partition("=")[0].lstrip("+~")
    try:
        override = copy.copy(parse_line(line))
    except Exception as exc:
        problems.append(_problem(key, f"cannot parse override: {first_line(exc)}", line, origin))
        return None
    key = override.key_or_group or key
    if not override.is_sweep_override():
        return [f"{override.get_key_element()}={override.get_value_element_as_str()}"]
    if override.is_hydra_override():
        message = (
            "Hydra's own settings take one value; quote a sweep expression to pass it as text "
            f"({key}='…')"
        )
        problems.append(_problem(key, message, line, origin))
        return None
    if not override.is_discrete_sweep():
        message = (
            "interval() needs a sweeper that samples (hydra/sweeper=optuna); the evsys sweeper "
            "enumerates: use a list, range() or choice()"
        )
        problems.append(_problem(key, message, line, origin))
        return None
    if isinstance(override.value(), Glob):  # glob() lists a group's options: Hydra's loader
        override.config_loader = config_loader()
    try:
        values = list(override.sweep_string_iterator())
    except Exception as exc:
        problems.append(_problem(key, f"cannot expand: {first_line(exc)}", line, origin))
        return None
    if not values:
        problems.append(_problem(key, "the sweep expands to no value", line, origin))
        return None
    return [f"{override.get_key_element()}={value}" for value in values]


def _problem(key: str, message: str, line: str, origin: str) -> Problem:
    return Problem(path=key, message=message, value=line, source=origin)


def _paired_axis(axis: dict[str, str], problems: list[Problem]) -> list[list[str]]:
    origin = "hydra.sweeper.paired"
    values = {
        key: _expand(f"{key}={expression}", origin, problems) for key, expression in axis.items()
    }
    if any(v is None for v in values.values()) or not values:
        return [[]]
    lengths = {key: len(v) for key, v in values.items() if v is not None}
    if len(set(lengths.values())) != 1:
        problems.append(
            Problem(
                path="hydra.sweeper.paired",
                message="paired keys must list the same number of values",
                value=lengths,
            )
        )
        return [[]]
    columns = [v for v in values.values() if v is not None]
    return [list(row) for row in zip(*columns, strict=True)]


def _explicit_axis(arms: list[list[str]], problems: list[Problem]) -> list[list[str]]:
    """``hydra.sweeper.arms``: each arm's lines as given; a line that sweeps has no place there."""
    origin = "hydra.sweeper.arms"
    for index, arm in enumerate(arms):
        for line in arm:
            values = _expand(line, origin, problems)
            if values is not None and len(values) != 1:
                message = "an explicit arm sets one value per key; sweep with hydra.sweeper.params"
                problems.append(_problem(f"{origin}[{index}]", message, line, origin))
    return [list(arm) for arm in arms] or [[]]


def _repeat_axis(
    axes: SweepAxes, swept_keys: list[str], problems: list[Problem]
) -> list[list[str]]:
    if axes.n_repeats <= 1:
        return [[]]
    paired_keys = [key for axis in axes.paired for key in axis]
    keys = [k.lstrip("+~") for k in [*swept_keys, *paired_keys]]
    if "seed" in keys:
        problems.append(
            Problem(
                path="hydra.sweeper.n_repeats",
                message="n_repeats and a seed override (fixed, swept or paired) both set the "
                "seed; keep one",
                value=axes.n_repeats,
            )
        )
        return [[]]
    first = axes.base_seed if axes.base_seed is not None else 0
    return [[f"seed={first + i}"] for i in range(axes.n_repeats)]


def settings_problems(axes: SweepAxes) -> list[Problem]:
    """What is wrong with the sweeper's own settings, before any axis is expanded."""
    problems = []
    if not isinstance(axes.n_repeats, int) or axes.n_repeats < 1:
        problems.append(
            Problem(
                path="hydra.sweeper.n_repeats",
                message="must be at least 1 (1: each arm once)",
                value=axes.n_repeats,
                expected="an integer >= 1",
            )
        )
    return problems


def template_problems(template: str | None, resolved: dict[str, Any]) -> list[Problem]:
    """Fields of ``hydra.sweeper.name_template`` that this config does not have."""
    if template is None:
        return []
    path = "hydra.sweeper.name_template"
    problems = []
    if "{" in PLACEHOLDER.sub("", template) or "}" in PLACEHOLDER.sub("", template):
        problems.append(
            Problem(
                path=path,
                message="unbalanced '{' or '}': fields are written {base} or {dotted.key}",
                value=template,
            )
        )
    for field_path in PLACEHOLDER.findall(template):
        if field_path != "base" and _lookup(resolved, field_path) is _ABSENT:
            problems.append(
                Problem(
                    path=path,
                    message=f"field '{field_path}' is not a key of the config",
                    value=template,
                    expected="{base} or a dotted key of the config, e.g. {algorithm.params.learning_rate}",
                )
            )
    return problems


_ABSENT = object()


def _lookup(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _ABSENT
    return node


# -- validation ----------------------------------------------------------------------------------


def preflight(
    arms_overrides: list[list[str]],
    *,
    name_template: str | None = None,
    config_name: str | None = None,
) -> list[Arm]:
    """Compose and validate every arm; name them. Problems stay on each arm (see ``bad_arms``)."""
    shared: dict[tuple[str, ...], Defaults] = {}
    config_groups_now = config_groups()  # looked up once for every arm
    arms = []
    for index, overrides in enumerate(arms_overrides):
        arm = Arm(index=index, overrides=list(overrides))
        problems: list[Problem] = []
        groups, keys = split_overrides(overrides, problems, config_groups_now)
        choice = tuple(o.input_line for o in groups)
        if choice not in shared:
            shared[choice] = compose_defaults(groups, config_name)
        composition = apply_overrides(shared[choice], keys, overrides, problems)
        arm.resolved = composition.config
        try:
            arm.config = validate_composition(composition)
        except ConfigError as exc:
            arm.problems = exc.problems
        arm.problems += template_problems(name_template, composition.config)
        if not arm.problems:
            safe = redact(arm.config.model_dump(mode="json"))
            arm.config_hash, arm.group_id = config_hash(safe), group_id(safe)
        arms.append(arm)
    name_arms(arms, name_template)
    return arms


def bad_arms(arms: list[Arm]) -> list[Arm]:
    return [arm for arm in arms if arm.problems]
