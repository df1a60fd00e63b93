"""What a prompt search spent: the usage of its task, reflection and judge models.

Reported by ``gepa_prompt`` as ``train/task/cost_usd``, ``train/reflection/…`` and
``train/judge/…`` (``cost_usd``, ``latency_p50_s``, ``latency_p95_s``, ``tokens_in``,
``tokens_out``: :mod:`evsys.clients.usage`), for the models that are hosted (a local or mock
model keeps no meter and reports nothing). With no reflection model of its own, the task model
reflects: its reflection calls are in ``train/task/…``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evsys.clients.usage import mark, reports_usage, summarize, usage_names, usage_since

TASK, REFLECTION, JUDGE = "train/task", "train/reflection", "train/judge"


class SearchSpend:
    """Marks the meters of a search's models when it starts; :meth:`metrics` reads what they
    spent since."""

    def __init__(self, task: Any, reflection: Any, scorer: Any):
        self.task, self.scorer = task, scorer
        self.reflection = reflection if reflection is not task else None
        self._marks = {id(c): mark(c) for c in (task, reflection)}

    def metrics(self) -> dict[str, float]:
        out = usage_since(self.task, self._marks[id(self.task)], TASK)
        if self.reflection is not None:
            out |= usage_since(self.reflection, self._marks[id(self.reflection)], REFLECTION)
        return out | summarize(self.scorer.judge_calls(), JUDGE)


def declared_spend(params: Mapping[str, Any]) -> list[str]:
    """The spend metrics ``gepa_prompt`` with ``params`` may report (validation declares them,
    so a sweep may rank by cost). The task model left unset is the run's eval client, which
    its params do not name: any ``train/task/…``."""
    task, reflection = params.get("task_model"), params.get("reflection_model")
    names = [f"{TASK}/*"] if task is None else _usage(task, TASK)
    if reflection is not None:
        names += _usage(reflection, REFLECTION)
    for scorer in (params.get("verifier"), params.get("metric")):
        judge = (scorer.get("params") or {}).get("judge") if isinstance(scorer, Mapping) else None
        if judge is not None:
            names += _usage(judge, JUDGE)
    return names


def _usage(spec: Any, prefix: str) -> list[str]:
    kind = spec.get("kind") if isinstance(spec, Mapping) else getattr(spec, "kind", None)
    return usage_names(prefix) if kind is not None and reports_usage(str(kind)) else []
