"""A reference run's ``validation`` (``RunConfig.validation``: the run's in-loop validation
set) as evsys's form of it: a ``val`` benchmark of ``metadata.benchmark``, scored every
``run_every`` training steps off the live model and recorded as ``val/<name>/<metric>``.

The block is one benchmark or a list of them (``path`` / ``id`` / ``name``, ``run_every``, …: the
fields of a ``metadata.benchmark`` entry); its entries are tagged ``val`` unless they say
otherwise. Each run's validation joins the experiment's own benchmarks, in that run's arms only.
"""

from __future__ import annotations

import copy
from typing import Any

VALIDATION_KEY = "validation"


def move_validation(
    run_content: dict[str, Any], metadata: dict[str, Any] | None, where: str, notes: list[str]
) -> None:
    """Replace ``run_content``'s ``validation`` by a ``metadata`` holding the experiment's
    ``metadata`` with the validation benchmarks appended. Malformed blocks are passed on as they
    are, for the schema to report against the file's key."""
    if VALIDATION_KEY not in run_content:
        return
    block = run_content.pop(VALIDATION_KEY)
    entries = block if isinstance(block, list) else [block]
    benchmarks = [_tagged(entry) for entry in entries if entry is not None]
    merged = copy.deepcopy(metadata or {})
    existing = merged.get("benchmark") or []
    merged["benchmark"] = [*(existing if isinstance(existing, list) else [existing]), *benchmarks]
    run_content["metadata"] = merged
    notes.append(
        f"{where}.validation: scored as `val` benchmarks (metadata.benchmark) every run_every steps"
    )


def _tagged(entry: Any) -> Any:
    if isinstance(entry, dict) and "tags" not in entry:
        return {**entry, "tags": ["val"]}
    return entry


def per_arm_metadata(content: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    """Where a run of ``runs`` has its own ``metadata`` (its validation), every run gets its own
    and the shared one goes: an arm's lines apply before the shared values, which would win."""
    if not any("metadata" in run for run in runs):
        return
    shared = content.pop("metadata", {})
    for run in runs:
        run.setdefault("metadata", copy.deepcopy(shared))
