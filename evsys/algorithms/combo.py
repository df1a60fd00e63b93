"""Phases chained: each recipe starts from the adapter the previous one ended with."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from evsys.checks import recipe_metrics
from evsys.config import AlgorithmConfig, DataConfig, Strict
from evsys.data.sources import apply_transforms, load_rows
from evsys.phases import chained_result, phase_steps, run_phase
from evsys.prompt_tuning.system_prompt import BEST_PROMPT, best_prompt, with_system_prompt
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.task_verifiers import recipe_judge


class Phase(AlgorithmConfig):
    """One recipe of the chain (``kind`` and ``params`` as in ``algorithm``)."""

    data: DataConfig | None = Field(
        None, description="Rows this phase trains on. None: the run's training rows."
    )


@register_algorithm("combo")
class Combo:
    """Runs ``phases`` in order on any backend, e.g. SFT to teach the format, then RL.

    Each phase gets a fresh optimizer and starts from the previous phase's final checkpoint; its
    metrics are kept as ``phase/<i>_<kind>/<metric>`` and its steps continue the run's curves.
    A prompt a phase tunes (``gepa_prompt``) is the system prompt of every later phase's rows,
    and of the run's eval.
    """

    class Config(Strict):
        phases: list[Phase] = Field(
            min_length=1,
            description="Recipes to run in order, e.g. [{kind: sft, params: {...}}, "
            "{kind: rl, params: {...}}].",
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    @classmethod
    def result_metrics(cls, params: dict[str, Any], backend: str) -> list[str]:
        """Every phase's metrics as ``phase/<i>_<kind>/…``, and the last phase's plain."""
        names, last = ["train/steps"], []
        for index, phase in enumerate(cls.Config(**params).phases):
            last = recipe_metrics(phase.kind, phase.params, backend)
            names += [f"phase/{index}_{phase.kind}/{name}" for name in last]
        return names + last

    def train(self, ctx: RunContext) -> RunResult:
        checkpoint, steps = ctx.config.model.load_checkpoint_path, 0
        tuned: dict[str, str] = {}  # the best_prompt artifact of the last phase that tuned one
        prompt: str | None = None
        metrics: dict[str, float] = {}
        last: dict[str, float] = {}
        for index, phase in enumerate(self.cfg.phases):
            rows = ctx.train_rows
            if phase.data is not None:
                judge = recipe_judge(phase.params)  # an LLM-judged phase takes judge tasks
                rows = apply_transforms(
                    load_rows(phase.data, ctx.data_store, judge=judge), phase.data.transforms
                )
            if prompt is not None:
                rows = with_system_prompt(rows, prompt)
            name = f"{index}_{phase.kind}"
            result = run_phase(
                ctx,
                recipe=phase.kind,
                params=phase.params,
                rows=rows,
                start_from=checkpoint,
                directory=name,
                step_offset=steps,
            )
            checkpoint = result.artifacts.get("final_checkpoint", checkpoint)
            steps += phase_steps(result)
            if BEST_PROMPT in result.artifacts:
                tuned = {BEST_PROMPT: result.artifacts[BEST_PROMPT]}
                prompt = best_prompt(tuned)
            metrics |= {f"phase/{name}/{key}": value for key, value in result.metrics.items()}
            last = result.metrics
        metrics |= last  # the last phase's values stand for the run
        metrics["train/steps"] = float(steps)
        return chained_result(ctx, checkpoint, metrics, tuned)
