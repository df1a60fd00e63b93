"""The data of the experiment's two views of its swept axes, as JSON for the page's script:
a parallel-coordinates view (one axis per swept key and the metric, one line per arm) and a
2-D heat map of two swept keys (the metric's mean over the arms of each cell).

Values travel as data (numbers, or text the script sets as text); nothing here is markup.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from evsys.dashboard.ui.arm_query import arm_values, is_number, value_text

MAX_CATEGORIES = 200
"""A heat map axis shows at most this many values (the most frequent)."""


def _axis(key: str, values: list[Any]) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    if present and all(is_number(v) for v in present):
        low, high = min(present), max(present)
        log = low > 0 and high / low >= 100
        return {"key": key, "kind": "log" if log else "linear", "min": low, "max": high}
    categories = list(dict.fromkeys(value_text(v) for v in present))
    return {"key": key, "kind": "category", "categories": categories}


def parallel(
    arms: Sequence[dict[str, Any]], keys: Sequence[str], metric: str | None
) -> dict[str, Any]:
    """One axis per key (numeric: linear or log; otherwise categories) and one for ``metric``;
    each arm's position on each (a category's index; None where it has no value)."""
    flat = [arm_values(a) for a in arms]
    columns = [[f.get(k) for f in flat] for k in keys]
    if metric:
        columns.append([a["summary"].get(metric) for a in arms])
    names = [*keys, metric] if metric else list(keys)
    axes = [_axis(name, col) for name, col in zip(names, columns, strict=True)]
    lines = []
    for index, arm in enumerate(arms):
        values = []
        for axis, column in zip(axes, columns, strict=True):
            value = column[index]
            if value is None or (axis["kind"] != "category" and not is_number(value)):
                values.append(None)
            elif axis["kind"] == "category":
                values.append(axis["categories"].index(value_text(value)))
            else:
                values.append(value)
        score = arm["summary"].get(metric) if metric else None
        lines.append(
            {
                "id": arm["id"],
                "name": arm["name"],
                "values": values,
                "score": score if is_number(score) else None,
            }
        )
    return {"axes": axes, "metric": metric, "arms": lines}


def heatmap(
    arms: Sequence[dict[str, Any]], x_key: str, y_key: str, metric: str | None
) -> dict[str, Any]:
    """``metric``'s mean, std and count over the arms of each (x value, y value) cell; values
    in numeric order when every one is a number, else in order of first appearance."""
    cells: dict[tuple[str, str], list[float]] = {}
    raw: dict[str, dict[str, Any]] = {"x": {}, "y": {}}
    for arm in arms:
        values = arm_values(arm)
        if x_key not in values or y_key not in values:
            continue
        x, y = value_text(values[x_key]), value_text(values[y_key])
        raw["x"].setdefault(x, values[x_key])
        raw["y"].setdefault(y, values[y_key])
        score = arm["summary"].get(metric) if metric else None
        found = cells.setdefault((x, y), [])
        if is_number(score):
            found.append(float(score))
    xs, ys = _ordered(raw["x"]), _ordered(raw["y"])
    grid = []
    for y in ys:
        row = []
        for x in xs:
            found = cells.get((x, y))
            if found is None:
                row.append(None)
                continue
            mean = statistics.fmean(found) if found else None
            std = statistics.stdev(found) if len(found) > 1 else None
            row.append({"mean": mean, "std": std, "n": len(found)})
        grid.append(row)
    return {"x_key": x_key, "y_key": y_key, "metric": metric, "x": xs, "y": ys, "cells": grid}


def _ordered(values: dict[str, Any]) -> list[str]:
    texts = list(values)
    if all(is_number(v) for v in values.values()):
        texts.sort(key=lambda t: values[t])
    return texts[:MAX_CATEGORIES]
