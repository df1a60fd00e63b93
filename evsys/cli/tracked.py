"""``evsys experiments`` and ``evsys runs``: what the dashboard holds, without a browser.

    evsys experiments [--tag T] [--status S] [--json]
    evsys runs [--experiment ID] [--status S] [--json]

The service and key come from EVSYS_API_URL and EVSYS_API_KEY. ``--json`` prints the service's
records as they are, for an agent to read "what has been tried".
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from evsys.report import format_number

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_experiments_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tag", help="only experiments with this tag")
    parser.add_argument("--status", help="only this status (running, completed, failed, …)")
    parser.add_argument("--limit", type=int, help="at most this many, newest first")
    parser.add_argument("--json", action="store_true", help="machine-readable listing")


def add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", help="only the runs of this experiment id")
    parser.add_argument("--status", help="only this status (running, completed, failed, …)")
    parser.add_argument("--json", action="store_true", help="machine-readable listing")


def execute(args: argparse.Namespace) -> int:
    from evsys.data.references import reading_client
    from evsys.tracking.errors import DashboardClientError

    try:
        with reading_client() as client:
            if args.command == "experiments":
                rows = client.list_experiments(tag=args.tag, status=args.status, limit=args.limit)
            else:
                rows = client.list_runs(experiment_id=args.experiment, status=args.status)
    except DashboardClientError as exc:
        print(f"evsys {args.command}: {exc}", file=sys.stderr)
        return exit_code(exc)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    elif args.command == "experiments":
        _print_table(rows, _EXPERIMENT_COLUMNS)
    else:
        _print_table(rows, _RUN_COLUMNS)
    return EXIT_OK


def exit_code(exc: Exception) -> int:
    """2 for what the caller can fix (no or a rejected key, a refused request), 1 for a service
    that does not answer or fails."""
    from evsys.tracking.errors import EvsysAuthError

    status = getattr(exc, "status", None)
    if isinstance(exc, EvsysAuthError) or (status is not None and status < 500):
        return EXIT_BAD_INPUT
    return EXIT_FAILED


_EXPERIMENT_COLUMNS = ("id", "name", "status", "success_metric", "best_score", "tags")
_RUN_COLUMNS = ("id", "experiment_id", "name", "status", "seed", "summary")


def _print_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):  # a run's summary: its metrics, compactly
        return " ".join(f"{k}={_cell(v)}" for k, v in sorted(value.items())) or "-"
    return " ".join(str(value).split())  # one line, whatever the text holds
