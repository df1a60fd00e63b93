"""``evsys diff <run_a> <run_b> [--json]``: the resolved-config and metric differences of two runs.

Each run is its directory or its ``run_result.json``. Read-only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from evsys.report import format_number

if TYPE_CHECKING:
    from evsys.run.compare import RunDiff

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", help="a run directory, or its run_result.json")
    parser.add_argument("run_b", help="the run to compare it with")
    parser.add_argument("--json", action="store_true", help="machine-readable differences")


def execute(args: argparse.Namespace) -> int:
    from evsys.errors import DataError
    from evsys.run.compare import diff_runs, load_record

    try:
        a, b = load_record(args.run_a), load_record(args.run_b)
    except DataError as exc:
        print(f"evsys diff: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = diff_runs(a, b)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(render(result), end="")
    return EXIT_OK


def render(result: RunDiff) -> str:
    from evsys.run.compare import show_metric, show_value, summary

    lines = []
    for label, record in (("a", result.a), ("b", result.b)):
        s = summary(record)
        commit = (s["git_commit"] or "no git")[:12] + (" + uncommitted diff" * bool(s["git_diff"]))
        lines.append(f"{label}: {s['path']}")
        lines.append(f"   {s['run_id']}  {s['status']}  config {s['config_hash']}  {commit}")
    lines.append("")

    count = len(result.changed) + len(result.added) + len(result.removed)
    if not count:
        lines.append("config: identical")
    else:
        lines.append(f"config: {count} difference{'s' * (count != 1)}")
        for key, (value_a, value_b) in result.changed.items():
            lines.append(f"  {key}: {show_value(value_a)} -> {show_value(value_b)}")
        for key, value in result.added.items():
            lines.append(f"+ {key}: {show_value(value)}   (only in b)")
        for key, value in result.removed.items():
            lines.append(f"- {key}: {show_value(value)}   (only in a)")
    lines.append("")

    if not result.metrics:
        lines.append("metrics: none recorded")
    else:
        rows = [("metric", "a", "b", "delta")]
        for name, (value_a, value_b, delta) in result.metrics.items():
            shown = "" if delta is None else "0" if delta == 0 else format_number(delta, "+.4g")
            rows.append((name, show_metric(value_a), show_metric(value_b), shown))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines.append("metrics:")
        for row in rows:
            numbers = (c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
            cells = [row[0].ljust(widths[0]), *numbers]
            lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
