"""``evsys list [--kind KIND] [--json]``: what can be composed."""

from __future__ import annotations

import argparse
import inspect
import json
from typing import Any

from evsys.registry import REGISTRIES, backends_supporting, registry_for

EXIT_OK = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", help=f"only this kind: {', '.join(REGISTRIES)}")
    parser.add_argument("--json", action="store_true", help="machine-readable listing")


def inventory(kind: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """kind → entries with name, summary, defining module (and backends, for algorithms)."""
    kinds = [registry_for(kind).kind] if kind else list(REGISTRIES)
    out: dict[str, list[dict[str, Any]]] = {}
    for name in kinds:
        registry = REGISTRIES[name]
        entries = []
        for key, obj in registry.items():
            entry = {
                "name": key,
                "summary": _summary(obj),
                "module": getattr(obj, "__module__", ""),
            }
            if name == "algorithm":
                entry["backends"] = backends_supporting(key)
            entries.append(entry)
        out[name] = entries
    return out


def execute(args: argparse.Namespace) -> int:
    listing = inventory(args.kind)
    if args.json:
        print(json.dumps(listing, indent=2))
        return EXIT_OK
    for kind, entries in listing.items():
        print(f"{kind} ({REGISTRIES[kind].entry_point_group})")
        width = max((len(e["name"]) for e in entries), default=0)
        for e in entries:
            runs_on = f"  [backends: {', '.join(e['backends'])}]" if "backends" in e else ""
            print(f"  {e['name']:<{width}}  {e['summary']}{runs_on}")
        print()
    return EXIT_OK


def _summary(obj: Any) -> str:
    """The docstring's first paragraph on one line: a summary wrapped over lines stays whole."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())
