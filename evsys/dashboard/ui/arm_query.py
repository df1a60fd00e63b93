"""What a reader asks of an experiment's arms, from the page's query string: search, filters,
sort, page, columns and group-by; and the answers, computed over the arms already read (one
query for all of them, so nothing here costs a query per arm).

Every parameter is text from outside: it is parsed and checked here, and a bad one raises
``BadQuery`` naming the parameter and what is wrong (the routes answer 400 with it). A config
key or value a reader types only ever selects among the arms' own values.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evsys.report import format_number
from evsys.run_diff import flatten, show_value

PER_PAGE_CHOICES = (25, 50, 100, 200)
DEFAULT_PER_PAGE = 50
MAX_PAGE = 1_000_000
MAX_TEXT = 500
"""The longest search text, filter or key a query may carry."""
MAX_FILTERS = 20
STATUSES_ANY = ""


class BadQuery(ValueError):
    """A query parameter that cannot be honoured; ``str()`` is ``<parameter>: <what>``."""


@dataclass
class ArmQuery:
    search: str = ""
    """Case-insensitive text searched in each arm's name, id and config values."""
    status: str = STATUSES_ANY
    where: list[tuple[str, str]] = field(default_factory=list)
    """``key=value`` filters on the arms' config (dotted keys, values as the table shows them)."""
    sort: str | None = None
    order: str | None = None
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE
    columns: list[str] | None = None
    """The table's columns to show (column keys); None: all of them."""
    group: str = ""
    """A config key to group the arms by (mean ± std of each metric over a group's arms)."""

    def params(self, **changes: Any) -> list[tuple[str, str]]:
        """This query as URL parameters (for links that keep it), with ``changes`` applied."""
        values = {
            "q": self.search,
            "status": self.status,
            "where": [f"{k}={v}" for k, v in self.where],
            "sort": self.sort or "",
            "order": self.order or "",
            "page": str(self.page) if self.page != 1 else "",
            "per_page": str(self.per_page) if self.per_page != DEFAULT_PER_PAGE else "",
            "cols": self.columns or [],
            "group": self.group,
        } | changes
        out: list[tuple[str, str]] = []
        for name, value in values.items():
            for item in value if isinstance(value, list) else [value]:
                if item not in ("", None):
                    out.append((name, str(item)))
        return out


def parse_query(params: Mapping[str, Any]) -> ArmQuery:
    """An ``ArmQuery`` from a query string (a Starlette ``QueryParams`` or a plain mapping of
    lists); raises ``BadQuery`` for a malformed parameter."""

    def every(name: str) -> list[str]:
        if hasattr(params, "getlist"):
            values = params.getlist(name)
        else:
            found = params.get(name, [])
            values = found if isinstance(found, list) else [found]
        for value in values:
            if len(value) > MAX_TEXT or "\x00" in value:
                raise BadQuery(f"{name}: longer than {MAX_TEXT} characters or holds a NUL")
        return values

    def one(name: str) -> str:
        values = every(name)
        if len(values) > 1:
            raise BadQuery(f"{name}: given {len(values)} times, at most once")
        return values[0].strip() if values else ""

    query = ArmQuery(search=one("q"), status=one("status"), group=one("group"))
    query.sort, query.order = one("sort") or None, one("order") or None
    query.page = _integer("page", one("page"), 1, 1, MAX_PAGE)
    query.per_page = _integer("per_page", one("per_page"), DEFAULT_PER_PAGE, 1, 10_000)
    if query.per_page not in PER_PAGE_CHOICES:
        raise BadQuery(f"per_page: {query.per_page} is not one of {list(PER_PAGE_CHOICES)}")
    wheres = [w for w in every("where") if w.strip()]
    if len(wheres) > MAX_FILTERS:
        raise BadQuery(f"where: {len(wheres)} filters, at most {MAX_FILTERS}")
    for item in wheres:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadQuery(f"where: {item!r} is not key=value")
        query.where.append((key.strip(), value.strip()))
    columns = [c for c in every("cols") if c]
    query.columns = columns or None
    return query


def _integer(name: str, text: str, default: int, low: int, high: int) -> int:
    if not text:
        return default
    if not text.isascii() or not text.isdigit():
        raise BadQuery(f"{name}: {text[:40]!r} is not a whole number")
    value = int(text)
    if not low <= value <= high:
        raise BadQuery(f"{name}: {value} is outside {low}..{high}")
    return value


# ---- answers ---------------------------------------------------------------------------------


def arm_values(arm: dict[str, Any]) -> dict[str, Any]:
    """An arm's config, flattened to dotted keys, with its Hydra overrides' keys where the
    config lacks them (an override is what a sweep set) and its seed. Kept on the arm's dict
    (read for this request only): the table, filters, groups and charts each ask for it."""
    cached = arm.get("_values")
    if cached is not None:
        return cached
    values = flatten(arm.get("config") or {})
    for item in arm.get("overrides") or []:
        if isinstance(item, str) and "=" in item:
            key, value = item.split("=", 1)
            values.setdefault(key.lstrip("+~"), value)
    if arm.get("seed") is not None:
        values.setdefault("seed", arm["seed"])
    arm["_values"] = values
    return values


def value_text(value: Any) -> str:
    """A config value as the arms table and the filters show it."""
    if is_number(value):
        return format_number(value)
    return value if isinstance(value, str) else show_value(value)


def matches(arm: dict[str, Any], values: dict[str, Any], query: ArmQuery) -> bool:
    """Whether ``arm`` (its flattened config ``values``) passes the query's status, filters and
    search text."""
    if query.status and (arm.get("status") or "") != query.status:
        return False
    for key, wanted in query.where:
        if key not in values:
            return False
        value = values[key]
        if wanted not in (value_text(value), show_value(value), str(value)):
            return False
    if query.search:
        needle = query.search.casefold()
        haystack = [arm.get("name") or "", arm.get("id") or ""]
        haystack += [value_text(v) for v in values.values()]
        return any(needle in text.casefold() for text in haystack)
    return True


def select_arms(arms: Sequence[dict[str, Any]], query: ArmQuery) -> list[dict[str, Any]]:
    return [a for a in arms if matches(a, arm_values(a), query)]


def page_bounds(total: int, page: int, per_page: int) -> tuple[int, int, int]:
    """``(page, pages, first index)``: a page past the end shows the last one."""
    pages = max(1, math.ceil(total / per_page))
    page = min(page, pages)
    return page, pages, (page - 1) * per_page


@dataclass
class Group:
    value: str
    arms: int
    seeds: list[str]
    stats: dict[str, tuple[float, float | None, int]]
    """metric → (mean, sample std or None for one value, how many arms had it)."""


def group_arms(arms: Sequence[dict[str, Any]], key: str, metrics: Sequence[str]) -> list[Group]:
    """The arms grouped by their value of config ``key`` (``(absent)`` where they lack it),
    each group with the mean ± std of every metric over its arms (the seeds of a setting)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    raw: dict[str, Any] = {}
    for arm in arms:
        values = arm_values(arm)
        text = value_text(values[key]) if key in values else "(absent)"
        if text == "(absent)" and key in values:
            text = "'(absent)'"  # a config value that reads like the missing one
        grouped.setdefault(text, []).append(arm)
        raw.setdefault(text, values.get(key))
    present = {t: v for t, v in raw.items() if t != "(absent)"}
    numeric = all(is_number(v) for v in present.values())
    # numbers in numeric order, else text in text order; arms without the key last
    order = sorted(present, key=lambda t: present[t] if numeric else t)
    order += ["(absent)"] if "(absent)" in grouped else []
    out = []
    for text in order:
        members = grouped[text]
        stats = {}
        for metric in metrics:
            found = [a["summary"][metric] for a in members if is_number(a["summary"].get(metric))]
            if found:
                std = statistics.stdev(found) if len(found) > 1 else None
                stats[metric] = (statistics.fmean(found), std, len(found))
        seeds = sorted({str(a["seed"]) for a in members if a.get("seed") is not None})
        out.append(Group(text, len(members), seeds, stats))
    return out


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
