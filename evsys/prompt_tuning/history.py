"""What a GEPA search did, as it happens: metrics per iteration and every prompt it tried.

A GEPA callback (its events are plain dicts): the best validation score and the number of
candidates go to the run's log stores after every iteration (step = iteration; step 0 is the
seed prompt), and at the end the whole history is written to ``prompt_candidates.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evsys.files import write_text_atomically
from evsys.protocols import LogStore

log = logging.getLogger(__name__)

HISTORY_FILE = "prompt_candidates.json"


class SearchHistory:
    """Implements the parts of ``gepa.core.callbacks.GEPACallback`` evsys records."""

    def __init__(
        self,
        log_store: LogStore,
        component: str,
        on_iteration: Callable[[int, str], None] = lambda step, prompt: None,
    ):
        """``on_iteration(iteration, best_prompt)`` runs after each iteration is logged."""
        self.log_store, self.component, self.on_iteration = log_store, component, on_iteration
        self.proposals: list[dict[str, Any]] = []
        self.iterations = 0
        self.seed_val_score: float | None = None

    # -- GEPA events ---------------------------------------------------------------------------

    def on_valset_evaluated(self, event: dict[str, Any]) -> None:
        if event["iteration"] == 0:  # the seed prompt, before any proposal
            self.seed_val_score = float(event["average_score"])
            self._log(
                0, best=self.seed_val_score, candidates=1, calls=event["num_examples_evaluated"]
            )

    def on_proposal_end(self, event: dict[str, Any]) -> None:
        prompt = event["new_instructions"].get(self.component)
        self.proposals.append({"iteration": event["iteration"], "prompt": prompt})

    def on_candidate_accepted(self, event: dict[str, Any]) -> None:
        self._settle(
            event["iteration"],
            accepted=True,
            candidate_index=event["new_candidate_idx"],
            minibatch_score=event["new_score"],
        )

    def on_candidate_rejected(self, event: dict[str, Any]) -> None:
        self._settle(
            event["iteration"],
            accepted=False,
            reason=event["reason"],
            minibatch_score=event["new_score"],
            parent_minibatch_score=event["old_score"],
        )

    def on_iteration_end(self, event: dict[str, Any]) -> None:
        state = event["state"]
        scores = state.program_full_scores_val_set
        best = max(range(len(scores)), key=scores.__getitem__)
        self.iterations = int(event["iteration"])
        self._log(
            self.iterations,
            best=scores[best],
            candidates=len(state.program_candidates),
            calls=state.total_num_evals,
        )
        self.on_iteration(self.iterations, state.program_candidates[best][self.component])

    # -- the record ------------------------------------------------------------------------------

    def write(self, path: Path, result: Any) -> None:
        """The candidates GEPA kept (prompt, parents, validation score) and every proposal."""
        best = result.best_idx
        record = {
            "component": self.component,
            "best_index": best,
            "best_val_score": result.val_aggregate_scores[best],
            "seed_val_score": result.val_aggregate_scores[0],
            "total_metric_calls": result.total_metric_calls,
            "candidates": [
                {
                    "index": index,
                    "prompt": candidate[self.component],
                    "parents": result.parents[index],
                    "val_score": result.val_aggregate_scores[index],
                    "metric_calls_at_discovery": result.discovery_eval_counts[index],
                }
                for index, candidate in enumerate(result.candidates)
            ],
            "proposals": self.proposals,
        }
        write_text_atomically(path, json.dumps(record, indent=2, default=str) + "\n")

    def _settle(self, iteration: int, **outcome: Any) -> None:
        """Attach the outcome to the proposal of ``iteration`` (the last one, with one proposal
        per iteration)."""
        for proposal in reversed(self.proposals):
            if proposal["iteration"] == iteration and "accepted" not in proposal:
                proposal.update(outcome)
                return

    def _log(self, step: int, *, best: float, candidates: int, calls: int) -> None:
        log.info(
            "gepa_prompt iteration %d: best validation score %.4g, %d candidates, %d metric calls",
            step,
            best,
            candidates,
            calls,
        )
        self.log_store.log_metrics(
            {
                "gepa/best_val_score": best,
                "gepa/num_candidates": float(candidates),
                "gepa/metric_calls": float(calls),
            },
            step=step,
        )
