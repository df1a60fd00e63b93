"""How evsys tells people (and agents) what went wrong or what happened."""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any, TextIO

from evsys.errors import Problem


def problems_header(count: int, subject: str = "the config") -> str:
    """The first line of every problem report (``validate``, a run, a plan, a sweep)."""
    return f"evsys: {subject} has {count} problem{'s' * (count != 1)}:"


def format_problems(problems: list[Problem], header: str | None = None) -> str:
    """Every problem, one block each: path and message, then value, expectation, fix, source."""
    lines = [header or problems_header(len(problems)), ""]
    for p in problems:
        lines += _problem_lines(p)
    return "\n".join(lines)


def _problem_lines(p: Problem, extra: list[str] | None = None) -> list[str]:
    lines = [f"  {p.path or '(config)'}: {p.message}", *(extra or [])]
    if p.value is not None:
        lines.append(f"      value:    {_short(p.value)}")
    if p.expected:
        lines.append(f"      expected: {p.expected}")
    if p.suggestion:
        lines.append(f"      did you mean '{p.suggestion}'?")
    if p.message == "required value is missing" and p.path:
        lines.append(f"      set it:   {p.path}=<value>")
    if p.source:
        lines.append(f"      from:     {p.source}")
    return lines


MAX_GROUPS = 20
MAX_SHOWN = 3


def format_arm_problems(bad: list[tuple[int, str, list[Problem]]], total: int) -> str:
    """The problems of a sweep's bad arms, ``(index, name, problems)`` each, compactly: a problem
    shared by many arms is one block naming them (``arms #0–#2999``), so the report stays short
    however large the sweep."""
    groups: dict[tuple, list[tuple[int, str, Problem]]] = {}
    for index, name, problems in bad:
        for p in problems:
            groups.setdefault((p.path, p.message, p.expected, p.suggestion), []).append(
                (index, name, p)
            )
    lines = [f"evsys: {len(bad)} of {total} arms are invalid; no arm was launched.", ""]
    for members in list(groups.values())[:MAX_GROUPS]:
        first = members[0][2]
        arms = _arm_list(sorted({(i, n) for i, n, _ in members}))
        values = list(dict.fromkeys(_short(p.value) for _, _, p in members if p.value is not None))
        sources = list(dict.fromkeys(p.source for _, _, p in members if p.source))
        shown = Problem(
            path=first.path,
            message=first.message,
            expected=first.expected,
            suggestion=first.suggestion,
        )
        block = _problem_lines(shown, [f"      arms:     {arms}"])
        if values:
            block.insert(
                2, f"      {'value: ' if len(values) == 1 else 'values:'}   {_some(values)}"
            )
        if sources:
            block.append(f"      from:     {_some(sources)}")
        lines += [*block, ""]
    if len(groups) > MAX_GROUPS:
        lines.append(
            f"  … and {len(groups) - MAX_GROUPS} more problems (evsys plan --json lists every one)"
        )
    return "\n".join(lines).rstrip()


def _arm_list(arms: list[tuple[int, str]]) -> str:
    """``#1 name, #3 name`` for a few arms; ranges of indices (``#0–#99, #200``) for many."""
    if len(arms) <= MAX_SHOWN:
        return ", ".join(f"#{i} {name}" for i, name in arms)
    ranges: list[list[int]] = []
    for i, _ in arms:
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    text = [f"#{a}" if a == b else f"#{a}–#{b}" for a, b in ranges]
    more = ", …" if len(text) > 2 * MAX_SHOWN else ""
    return f"{', '.join(text[: 2 * MAX_SHOWN])}{more} ({len(arms)} arms)"


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_SHOWN])
    return shown if len(items) <= MAX_SHOWN else f"{shown}, … ({len(items)} different)"


def problems_json(problems: list[Problem]) -> str:
    return json.dumps(
        {"ok": False, "problems": [p.to_dict() for p in problems]}, indent=2, default=str
    )


def print_problems(
    problems: list[Problem], *, as_json: bool = False, stream: TextIO | None = None
) -> None:
    if as_json:
        print(problems_json(problems), file=stream or sys.stdout)
    else:
        print(format_problems(problems), file=stream or sys.stderr)


def format_run_summary(record: dict[str, Any]) -> str:
    status = record["status"]
    lines = [
        f"evsys: run {record['run_id']} {status} in {record['duration_s']:.1f}s",
        f"  dir: {record['run_dir']}",
    ]
    if record.get("error"):
        lines.append(f"  error: {record['error']}")
    metrics = dict(record.get("metrics") or {})
    before = {
        k.removeprefix("baseline/"): metrics.pop(k)
        for k in list(metrics)
        if k.startswith("baseline/")
    }
    width = max((len(k) for k in metrics), default=0)
    lines += [
        f"  {k:<{width}}  {_number(v)}" for k, v in sorted(metrics.items()) if k not in before
    ]
    if before:
        lines += ["", "  before and after training:", *_before_after(before, metrics)]
    continual = (record.get("extras") or {}).get("continual")
    if continual:  # the stage × eval-set matrix of a continual run
        table = format_matrix(record.get("name", ""), continual["eval_sets"], continual["rows"])
        lines += ["", *("  " + line if line else "" for line in table.splitlines()[2:])]
    return "\n".join(lines)


def _before_after(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    width = max(len(k) for k in before)
    lines = [f"    {'metric':<{width}}  {'before':>8}  {'after':>8}  {'change':>8}"]
    for key, was in sorted(before.items()):
        now = after.get(key)
        change = format_number(now - was, "+.4g") if isinstance(now, int | float) else "-"
        now_text = _number(now) if now is not None else "-"
        lines.append(f"    {key:<{width}}  {_number(was):>8}  {now_text:>8}  {change:>8}")
    return lines


def _number(value: Any) -> str:
    return format_number(value)


def format_number(value: Any, spec: str = ".4g") -> str:
    """A metric or a step count for people: a whole number as an integer (40000, never 4e+04),
    any other number to ``spec`` (4 significant digits); ``spec`` may ask for a sign (``+.4g``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return format(int(value), "+d" if spec.startswith("+") else "d")
    return format(value, spec)


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- a continual run's stage × eval-set matrix (continual.md, and the run summary) ----------------


def eval_metric_names(scores: dict[str, float], names: list[str]) -> list[str]:
    """The metric names of ``eval/<set>/<metric>`` keys, in order of appearance."""
    found = []
    for name in names:
        prefix = f"eval/{name}/"
        found += [k.removeprefix(prefix) for k in scores if k.startswith(prefix)]
    return list(dict.fromkeys(found))


def format_matrix(title: str, eval_sets: list[str], rows: list[dict[str, Any]]) -> str:
    """The markdown of the stage × eval-set matrix (also drawn by the run summary)."""
    lines = [
        f"# Continual learning: {title}",
        "",
        "Each row is the model after training on that stage; each column an eval set "
        "(or a test benchmark).",
        "",
    ]
    every = {k: None for row in rows for k in row["scores"]}
    metrics = eval_metric_names(every, eval_sets)
    benchmarks = list(
        dict.fromkeys(k.split("/")[1] for k in every if k.startswith("test/") and k.count("/") == 2)
    )
    for metric in metrics:
        tests = [b for b in benchmarks if f"test/{b}/{metric}" in every]
        header = ["after stage", *eval_sets, "mean", *(f"test/{b}" for b in tests)]
        lines += [f"## {metric}", "", _row(header), _row(["---"] * len(header))]
        for row in rows:
            scores = row["scores"]
            values = [scores.get(f"eval/{n}/{metric}") for n in eval_sets]
            present = [v for v in values if v is not None]
            mean = statistics.fmean(present) if present else None
            tail = [scores.get(f"test/{b}/{metric}") for b in tests]
            lines.append(_row([row["after"], *map(_fmt, values), _fmt(mean), *map(_fmt, tail)]))
        lines.append("")
    if not metrics:
        lines += ["No eval set was scored (eval.metrics is empty or eval is disabled).", ""]
    return "\n".join(lines)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _fmt(value: float | None) -> str:
    return "" if value is None else format_number(value)
