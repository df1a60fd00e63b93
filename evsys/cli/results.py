"""``evsys results <sweep_dir> [--json | --csv]``: what a sweep found, read from disk.

Read-only: it aggregates the arms' ``run_result.json`` files afresh and prints, writing nothing,
so it is safe on a sweep still running on a cluster (arms without a result are ``missing``) or one
that crashed before its ``sweep_result.json`` was written. The multirun writes the files itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from evsys.sweep.aggregate import SweepSummary

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="a sweep directory (outputs/sweeps/<date>/<time>_<name>)")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="the sweep_result.json payload")
    form.add_argument("--csv", action="store_true", help="one row per arm: overrides, metrics")


def execute(args: argparse.Namespace) -> int:
    from evsys.errors import DataError
    from evsys.sweep.aggregate import aggregate

    try:
        summary = aggregate(args.sweep_dir)
    except DataError as exc:
        print(f"evsys results: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        from evsys.evolve.lineage import read_evolution

        payload = summary.to_dict()
        evolution = read_evolution(summary.sweep_dir)  # an evolve sweep: its lineage too
        if evolution is not None:
            payload["evolution"] = evolution
        print(json.dumps(payload, indent=2, default=str))
    elif args.csv:
        write_csv(summary, sys.stdout)
    else:
        from evsys.sweep.summary import render_summary

        print(render_summary(summary), end="")
    return EXIT_OK


def write_csv(summary: SweepSummary, stream: TextIO) -> None:
    """Columns: arm, status, every override key, every metric (each in order of appearance).

    The first column is ``arm``, not ``name``, so that a ``name=…`` override has a column too.
    """
    from evsys.sweep.aggregate import metric_names, split_override

    overrides = [dict(map(split_override, arm.overrides)) for arm in summary.arms]
    keys = list(dict.fromkeys(key for values in overrides for key in values))
    metrics = metric_names(summary.arms)
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["arm", "status", *keys, *metrics])
    for arm, values in zip(summary.arms, overrides, strict=True):
        row = [arm.name, arm.status, *(values.get(k, "") for k in keys)]
        writer.writerow(row + [arm.metrics.get(m, "") for m in metrics])
