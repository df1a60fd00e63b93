"""GEPA's adapter for evsys: a candidate is a system prompt, a rollout is one answer of the task
model, its score comes from the run's verifier or metric.

Imported only when ``gepa_prompt`` runs: it needs the ``gepa`` package.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from gepa import EvaluationBatch

from evsys.prompt_tuning.scoring import RowScorer
from evsys.prompt_tuning.system_prompt import set_system_prompt
from evsys.protocols import InferenceClient, Row
from evsys.rows import prompt_messages, prompt_text

log = logging.getLogger(__name__)

COMPONENT = "system_prompt"
"""The one text GEPA evolves."""


class SystemPromptAdapter:
    """Implements ``gepa.GEPAAdapter`` (``evaluate``, ``make_reflective_dataset``) over rows."""

    propose_new_texts = None  # GEPA's own reflective proposer, with the reflection model

    def __init__(
        self,
        client: InferenceClient,
        scorer: RowScorer,
        *,
        max_tokens: int,
        temperature: float,
    ):
        self.client, self.scorer = client, scorer
        self.max_tokens, self.temperature = max_tokens, temperature

    def evaluate(
        self, batch: list[Row], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch:
        prompts = [set_system_prompt(prompt_messages(row), candidate[COMPONENT]) for row in batch]
        completions, errors = self._generate(prompts)
        scores, trajectories = [], []
        for row, completion, error in zip(batch, completions, errors, strict=True):
            if error is not None:
                score, feedback = 0.0, f"The task model gave no answer: {error}"
            else:
                verdict = self.scorer(row, completion)
                score, feedback = verdict.score, verdict.feedback
            scores.append(score)
            trajectories.append(
                {"input": prompt_text(row), "output": completion, "feedback": feedback}
            )
        return EvaluationBatch(
            outputs=completions,
            scores=scores,
            trajectories=trajectories if capture_traces else None,
        )

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch,
        components_to_update: list[str],
    ) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        records = [
            {
                "Inputs": trace["input"],
                "Generated Outputs": trace["output"],
                "Feedback": trace["feedback"],
            }
            for trace in eval_batch.trajectories or []
        ]
        return {name: records for name in components_to_update}

    def _generate(self, prompts: list[list[dict[str, Any]]]) -> tuple[list[str], list[str | None]]:
        """Completions, and per prompt the error that stopped it (None: answered).

        A batching engine answers all or raises. Row by row, a row whose call fails (after the
        client's own retries) scores 0 and the search goes on; when every row fails the task
        model is down, and that ends the search.
        """
        kwargs = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        batch = getattr(self.client, "generate_batch", None)
        if batch is not None:
            completions = list(batch(prompts=prompts, **kwargs))
            return completions, [None] * len(completions)
        completions, errors, last = [], [], None
        for prompt in prompts:
            try:
                completions.append(self.client.generate(prompt=prompt, **kwargs))
                errors.append(None)
            except Exception as exc:  # one failed call costs one row's score
                log.warning("gepa_prompt: the task model failed on one row: %s", exc)
                last = exc
                completions.append("")
                errors.append(f"{type(exc).__name__}: {exc}")
        if prompts and last is not None and all(e is not None for e in errors):
            raise last
        return completions, errors
