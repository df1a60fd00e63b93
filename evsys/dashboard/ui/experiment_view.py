"""An experiment page's arms as a reader asked for them (``arm_query.ArmQuery``): filtered and
searched, sorted, one page of the table with the columns picked, grouped by a config key, and
the same rows for export. Built on ``views.arms_table`` over all the arms, so the best arm and
the swept axes never change with a filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from evsys.dashboard.ui import views
from evsys.dashboard.ui.arm_query import (
    PER_PAGE_CHOICES,
    ArmQuery,
    Group,
    arm_values,
    group_arms,
    is_number,
    page_bounds,
    select_arms,
)


@dataclass
class ArmsPage:
    table: views.ArmsTable
    """The page's rows, each with ``cells``: ``{text, numeric}`` for the picked columns."""
    best: dict[str, Any] | None
    best_score: float | None
    axes: dict[str, list[Any]]
    total: int
    matched: int
    page: int
    pages: int
    first: int
    query: ArmQuery
    choices: list[dict[str, Any]] = field(default_factory=list)
    """Every column, for the picker: ``{key, label, shown}``."""
    links: dict[str, str] = field(default_factory=dict)
    """prev, next, export (csv, json) and curve data, each keeping the query."""
    groups: list[Group] = field(default_factory=list)
    group_metrics: list[str] = field(default_factory=list)
    config_keys: list[str] = field(default_factory=list)
    per_page_choices: tuple[int, ...] = PER_PAGE_CHOICES


def best_score(experiment: dict[str, Any], best: dict[str, Any] | None) -> float | None:
    """The score beside the best arm: the one the sweep recorded for that arm, else the arm's
    own success metric (the current leader's). Never a score without its arm."""
    if best is None:
        return None
    recorded = experiment.get("best_score")
    if experiment.get("best_run_id") == best["id"] and recorded is not None:
        return recorded
    value = best["summary"].get(experiment.get("success_metric") or "")
    return value if is_number(value) else recorded


def arms_page(experiment: dict[str, Any], query: ArmQuery, base_url: str) -> ArmsPage:
    table, best, axes = views.arms_table(experiment, query.sort, query.order, base_url)
    # Links keep the search, filters and columns; a new sort starts at page 1.
    for column in table.columns:
        asked = parse_qs(urlsplit(column.href).query)  # views' link: ?sort=…&order=…
        params = query.params(sort=asked["sort"][0], order=asked["order"][0], page="")
        column.href = f"{base_url}?{urlencode(params)}"

    matched_ids = {a["id"] for a in select_arms(experiment["runs"], query)}
    rows = [r for r in table.rows if r["id"] in matched_ids]
    page, pages, first = page_bounds(len(rows), query.page, query.per_page)

    pickable = table.columns[1:]  # the arm's name always shows
    shown_keys = set(query.columns) if query.columns else {c.key for c in pickable}
    shown = [i for i, c in enumerate(pickable) if c.key in shown_keys]
    choices = [{"key": c.key, "label": c.label, "shown": c.key in shown_keys} for c in pickable]
    page_rows = []
    for row in rows[first : first + query.per_page]:
        # cells of views' rows are the axes and metrics (after name and status)
        texts = [row["status"], *row["cells"]]
        cells = [
            {
                "text": texts[i],
                "numeric": pickable[i].numeric,
                "status": pickable[i].key == "status",
            }
            for i in shown
        ]
        page_rows.append(row | {"cells": cells})
    table.rows = page_rows
    table.columns = [table.columns[0]] + [pickable[i] for i in shown]

    out = ArmsPage(
        table=table,
        best=best,
        best_score=best_score(experiment, best),
        axes=axes,
        total=len(experiment["runs"]),
        matched=len(rows),
        page=page,
        pages=pages,
        first=first,
        query=query,
        choices=choices,
    )
    out.links = _links(base_url, query, page, pages)
    keys: set[str] = set()
    for arm in experiment["runs"]:
        keys.update(arm_values(arm))
    out.config_keys = sorted(keys)
    if query.group:
        chosen = [a for a in experiment["runs"] if a["id"] in matched_ids]
        metrics = [c.label for c in pickable if c.key.startswith("metric:")]
        out.groups = group_arms(chosen, query.group, metrics)
        out.group_metrics = metrics
    return out


def _links(base_url: str, query: ArmQuery, page: int, pages: int) -> dict[str, str]:
    def at(path: str, **changes: Any) -> str:
        params = urlencode(query.params(**changes))
        return f"{path}?{params}" if params else path

    links = {
        "csv": at(f"{base_url}/arms.csv", page="", per_page=""),
        "json": at(f"{base_url}/arms.json", page="", per_page=""),
        "curves": at(f"{base_url}/curves.json", page="", per_page="", cols=[]),
        "axes": at(f"{base_url}/axes.json", page="", per_page="", cols=[]),
        "self": at(base_url),
        "base": base_url,
    }
    if page > 1:
        links["prev"] = at(base_url, page=str(page - 1))
    if page < pages:
        links["next"] = at(base_url, page=str(page + 1))
    return links


def export_rows(
    experiment: dict[str, Any], query: ArmQuery
) -> tuple[list[str], list[str], list[list[Any]]]:
    """Every arm the query matches (all pages, in the table's order) with the picked columns,
    as raw values: ``(column keys, column labels, rows)``, starting with id, name and status
    (keys are unique: ``axis:<key>``, ``metric:<name>``)."""
    table, _, axes = views.arms_table(experiment, query.sort, query.order, "")
    matched = {a["id"]: a for a in select_arms(experiment["runs"], query)}
    picked = set(query.columns) if query.columns else None
    columns = [c for c in table.columns[2:] if picked is None or c.key in picked]
    keys = ["id", "name", "status", *[c.key for c in columns]]
    labels = ["id", "name", "status", *[c.label for c in columns]]
    rows = []
    for row in table.rows:
        arm = matched.get(row["id"])
        if arm is None:
            continue
        values = arm_values(arm)
        line = [arm["id"], arm["name"], arm.get("status")]
        for column in columns:
            kind, _, key = column.key.partition(":")
            line.append(values.get(key) if kind == "axis" else arm["summary"].get(key))
        rows.append(line)
    return keys, labels, rows
