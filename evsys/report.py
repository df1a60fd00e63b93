"""How evsys tells people (and agents) what went wrong or what happened."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from evsys.errors import Problem


def format_problems(problems: list[Problem], header: str | None = None) -> str:
    """Every problem, one block each: path and message, then value, expectation, fix, source."""
    count = len(problems)
    lines = [header or f"evsys: the config has {count} problem{'s' * (count != 1)}:", ""]
    for p in problems:
        lines.append(f"  {p.path or '(config)'}: {p.message}")
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
    return "\n".join(lines)


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
        from evsys.run.continual import format_matrix

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
