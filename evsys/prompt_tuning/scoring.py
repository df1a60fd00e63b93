"""Scoring one answer of the task model, with feedback the reflection model can learn from.

GEPA's reflection model proposes a better prompt from examples of what the current one produced
and why that was right or wrong; the feedback names the expected answer and the one given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from evsys.answers import extract_answer, target_answer
from evsys.clients.usage import CallUsage
from evsys.config import MetricSpec, VerifierSpec
from evsys.errors import DataError
from evsys.protocols import Row
from evsys.registry import METRICS, VERIFIERS
from evsys.rows import prompt_text


@dataclass(frozen=True)
class Verdict:
    score: float
    feedback: str


class RowScorer:
    """Scores a completion of one row with a verifier (its reward) or a metric (computed on that
    row alone)."""

    def __init__(self, spec: VerifierSpec | MetricSpec):
        self.spec = spec
        if isinstance(spec, VerifierSpec):
            self._verifier: Any = VERIFIERS.build(spec.kind, spec.params)
            self._metric: Any = None
        else:
            self._verifier, self._metric = None, METRICS.build(spec.kind, spec.params)

    @property
    def name(self) -> str:
        role = "verifier" if self._verifier is not None else "metric"
        return f"{role} {self.spec.kind}"

    def judge_calls(self) -> list[CallUsage]:
        """The calls a judge model answered for this scorer (an llm_judge verifier, pass_rate
        with a judge); empty for scorers that ask none."""
        scorer = self._verifier if self._verifier is not None else self._metric
        for name in ("judge_calls", "calls"):
            method = getattr(scorer, name, None)
            if method is not None:
                return list(method())
        return []

    def __call__(self, row: Row, completion: str) -> Verdict:
        info: dict[str, Any] = {}
        if self._verifier is not None:
            result = self._verifier.verify(
                prompt=prompt_text(row), completion=completion, target=row
            )
            score, info = float(result.reward), result.info
        else:
            score = float(self._metric.compute(predictions=[completion], targets=[row]))
        return Verdict(score, self._feedback(row, completion, score, info))

    def _feedback(self, row: Row, completion: str, score: float, info: dict[str, Any]) -> str:
        verdict = "Correct" if score >= 1 else "Wrong"
        lines = [f"{verdict} (score {score:g} from the {self.name})."]
        expected = _expected(row)
        if score < 1 and expected is not None:
            lines.append(
                f"The expected answer is {expected!r}; this response answered "
                f"{extract_answer(completion)!r}."
            )
            shown = row.get("target_assistant")
            if isinstance(shown, str) and shown.strip():
                lines.append(f"A correct response: {shown.strip()}")
        if info:
            lines.append(f"Details: {json.dumps(info, default=str, sort_keys=True)}")
        return "\n".join(lines)


def _expected(row: Row) -> str | None:
    try:
        return target_answer(row)
    except DataError:  # e.g. a verifier that needs no answer (format_only)
        return None
