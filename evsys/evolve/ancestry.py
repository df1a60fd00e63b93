"""Where an arm came from, readable without the store: its mutation and its delta to each parent.

An arm's point is the value of every search-space dimension: what its proposal set, else the
sweep's fixed config. Its ``mutation`` is what its proposal set; its ``deltas`` say, against each
parent, which dimensions changed (from → to) and how each objective moved (child − parent).

A proposer that does not cross arms over (Optuna's TPE, CMA-ES, random) names as parent the
nearest earlier arm in the normalised space — each interval scaled to [0, 1] (log scale when the
dimension is), a choice 0 when equal and 1 when not — or none when there is no earlier arm;
never "the best so far" under the name of a parent.
"""

from __future__ import annotations

import math
from typing import Any

from evsys.evolve.space import CHOICE, Dimension


def base_point(context: Any) -> dict[str, Any]:
    """Each dimension's value in the sweep's fixed config (the base arm, resolved)."""
    from evsys.evolve.space import _lookup

    resolved = getattr(context.base_arm, "resolved", None) or {}
    return {d.key: _lookup(resolved, d.key) for d in context.dimensions}


def point_of(params: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    return {key: params.get(key, value) for key, value in base.items()}


def nearest_arm(
    params: dict[str, Any], history: list[Any], dimensions: list[Dimension], base: dict[str, Any]
) -> list[str]:
    """``[name]`` of the earlier arm nearest to ``params``, or ``[]`` when there is none."""
    here = point_of(params, base)
    best: tuple[float, str] | None = None
    for arm in history:
        there = point_of(arm.params, base)
        gap = math.sqrt(sum(_gap(d, here[d.key], there[d.key]) ** 2 for d in dimensions))
        if best is None or gap < best[0]:
            best = (gap, arm.name)
    return [best[1]] if best else []


def _gap(dimension: Dimension, a: Any, b: Any) -> float:
    if dimension.kind == CHOICE:
        return 0.0 if a == b else 1.0
    scaled = [_scaled(dimension, v) for v in (a, b)]
    if scaled[0] is None or scaled[1] is None:
        return 0.0 if a == b else 1.0
    return abs(scaled[0] - scaled[1])


def _scaled(dimension: Dimension, value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    low, high = float(dimension.low or 0), float(dimension.high or 0)
    if dimension.log and number > 0 and low > 0:
        number, low, high = math.log(number), math.log(low), math.log(high)
    return 0.0 if high == low else (number - low) / (high - low)


def ancestry(
    arm: Any, arms: dict[str, Any], base: dict[str, Any], metrics: list[str]
) -> dict[str, Any]:
    """``{"mutation": {key: value}, "deltas": [{parent, changed, objectives}]}`` of ``arm``;
    ``arms`` by name, ``metrics`` the objectives' names in order."""
    here = point_of(arm.params, base)
    deltas = []
    for name in arm.parents:
        parent = arms.get(name)
        if parent is None:
            continue
        there = point_of(parent.params, base)
        changed = {
            key: {"from": there[key], "to": value}
            for key, value in here.items()
            if there[key] != value
        }
        moved = {
            metric: _difference(arm.values, parent.values, position)
            for position, metric in enumerate(metrics)
        }
        deltas.append({"parent": name, "changed": changed, "objectives": moved})
    mutation = {key: value for key, value in arm.params.items() if key in base}
    return {"mutation": mutation, "deltas": deltas}


def _difference(child: list[float] | None, parent: list[float] | None, position: int) -> Any:
    if not child or not parent or len(child) <= position or len(parent) <= position:
        return None
    return child[position] - parent[position]
