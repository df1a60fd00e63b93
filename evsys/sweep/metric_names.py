"""A success metric named by its last part, as the reference writes it (``success_metric:
pass_rate``), resolved to the one metric the arms reported under that name
(``test/composio_eval_v2/pass_rate``).

Only the finished arms can tell which metrics a run reports (a recipe, a benchmark or a callback
adds its own), so the name is resolved against them. A name that several reported metrics end in
is ambiguous: nothing is ranked, and the report lists the candidates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

COMPLETED = "completed"  # ArmRow.status of a finished run (evsys.sweep.aggregate's)


def candidates(name: str, reported: Iterable[str]) -> list[str]:
    """The reported metrics ``name`` may mean: itself when reported, else every metric whose
    trailing ``/``-separated parts are ``name`` (``pass_rate`` → ``test/x/pass_rate``)."""
    reported = set(reported)
    if name in reported:
        return [name]
    return sorted(metric for metric in reported if metric.endswith("/" + name))


def reported_metrics(arms: Iterable[Any]) -> set[str]:
    """Every metric name a completed arm (an ``ArmRow``) reported."""
    return {metric for arm in arms if arm.status == COMPLETED for metric in arm.metrics}


def resolve(success: dict[str, str] | None, arms: list[Any]) -> dict[str, str] | None:
    """``success`` with its name replaced by the one reported metric it names; unchanged when the
    name is reported as it is, matches nothing, or is ambiguous (see :func:`ambiguity`)."""
    if success is None:
        return None
    found = candidates(success["name"], reported_metrics(arms))
    if len(found) == 1 and found[0] != success["name"]:
        return {**success, "name": found[0]}
    return success


def ambiguity(name: str, arms: list[Any]) -> str | None:
    """ "`pass_rate` names several reported metrics: …; give one in full" when it does, else None."""
    found = candidates(name, reported_metrics(arms))
    if len(found) < 2 or name in found:
        return None
    listed = ", ".join(f"`{metric}`" for metric in found)
    return f"`{name}` names several reported metrics: {listed}; give one of them in full"
