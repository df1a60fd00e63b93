"""Prompt tuning with GEPA: evolve the system prompt by reflection, no weight updates."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from evsys.config import (
    DataConfig,
    ExperimentConfig,
    InferenceSpec,
    MetricSpec,
    Strict,
    VerifierSpec,
)
from evsys.errors import ConfigError, MissingDependencyError, Problem
from evsys.files import write_text_atomically
from evsys.protocols import InferenceClient, Row, RunContext, RunResult
from evsys.registry import METRICS, register_algorithm

if TYPE_CHECKING:  # both import gepa
    from gepa import GEPAResult

    from evsys.prompt_tuning.adapter import SystemPromptAdapter
    from evsys.prompt_tuning.history import SearchHistory
    from evsys.prompt_tuning.spend import SearchSpend

log = logging.getLogger(__name__)

DEFAULT_SEED_PROMPT = "You are a helpful assistant."
CandidateSelection = Literal["pareto", "current_best", "epsilon_greedy", "top_k_pareto"]


@register_algorithm("gepa_prompt")
class GepaPrompt:
    """Searches for the system prompt that scores best, with GEPA (reflective prompt evolution).

    The task model answers training rows under a candidate prompt; the run's verifier or metric
    scores each answer; the reflection model reads answers with their feedback and proposes a
    better prompt; GEPA keeps the candidates that score best on held-out validation rows (a
    Pareto front per row). No weights change: the run's eval, its test benchmarks and the next
    ``combo`` phase use the best prompt as the system message (artifact ``best_prompt``). Runs on
    every backend; needs ``pip install 'evsys[gepa]'``.
    """

    updates_weights: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = (
        "train/steps",
        "gepa/seed_val_score",
        "gepa/best_val_score",
        "gepa/num_candidates",
        "gepa/metric_calls",
    )

    class Config(Strict):
        max_metric_calls: int = Field(
            200,
            gt=0,
            description="The budget: rows the task model answers and gets scored on, over the "
            "whole search (GEPA's max_metric_calls). Scoring the seed prompt on the validation "
            "rows counts; each candidate then costs about 2 × reflection_minibatch_size rows, "
            "plus the validation rows when it is kept. No iteration starts past the budget; "
            "the last one may end past it.",
        )
        task_model: InferenceSpec | None = Field(
            None,
            description="The model whose prompt is tuned: any inference client (mock, local, "
            "tinker, openai_compatible, …); `model` and `checkpoint` left unset are the run's. "
            "None: the client the run's eval uses (eval.inference, else the backend's own).",
        )
        reflection_model: InferenceSpec | None = Field(
            None,
            description="The model that reads answers with their feedback and writes better "
            "prompts: any inference client, ideally a strong one (e.g. {kind: "
            "openai_compatible, params: {model: gpt-4o}}). None: the task model reflects on "
            "its own answers.",
        )
        seed_prompt: str | None = Field(
            None,
            description="The prompt the search starts from. None: the system prompt the "
            f"training rows already open with (data.transforms), else {DEFAULT_SEED_PROMPT!r}.",
        )
        verifier: VerifierSpec | None = Field(
            None,
            description="Scores each answer (its reward). None: `metric`, else the first of "
            "eval.metrics, else the exact_match verifier.",
        )
        metric: MetricSpec | None = Field(
            None,
            description="Scores each answer as a metric computed on its row alone (e.g. "
            "toolkit_match). Set `verifier` or `metric`, not both.",
        )
        val_fraction: float = Field(
            0.5,
            gt=0,
            lt=1,
            description="Share of the training rows (drawn by seed) held out to validate "
            "candidates; the rest feed reflection. Ignored when val_data is set.",
        )
        val_data: DataConfig | None = Field(
            None,
            description="Rows that validate candidates. None: a val_fraction share of the "
            "training rows.",
        )
        reflection_minibatch_size: int = Field(
            3, ge=1, description="Training rows the reflection model sees per proposal."
        )
        candidate_selection: CandidateSelection = Field(
            "pareto", description="Which kept candidate the next proposal starts from."
        )
        use_merge: bool = Field(
            False, description="Also propose merges of two candidates on the Pareto front."
        )
        max_tokens: int | None = Field(
            None, gt=0, description="Task model's generation budget per row. None: eval.max_tokens."
        )
        temperature: float | None = Field(
            None, ge=0, description="Task model's sampling temperature. None: eval.temperature."
        )
        reflection_max_tokens: int = Field(
            1024, gt=0, description="Reflection model's generation budget per proposal."
        )
        reflection_temperature: float = Field(
            1.0, ge=0, description="Reflection model's sampling temperature."
        )
        reflection_prompt_template: str | None = Field(
            None,
            description="What the reflection model is asked; it must hold <curr_param> (the "
            "current prompt) and <side_info> (answers with feedback). None: GEPA's own.",
        )

        @field_validator("reflection_prompt_template")
        @classmethod
        def _template_has_placeholders(cls, template: str | None) -> str | None:
            missing = [p for p in ("<curr_param>", "<side_info>") if template and p not in template]
            if missing:
                raise ValueError(
                    f"the template lacks {' and '.join(missing)}; GEPA replaces <curr_param> "
                    "with the current prompt and <side_info> with answers and their feedback"
                )
            return template

        @model_validator(mode="after")
        def _one_scorer_of_completions(self) -> GepaPrompt.Config:
            if self.verifier is not None and self.metric is not None:
                raise ValueError("set `verifier` or `metric`, not both: one scores each answer")
            metric = self.metric
            if metric is not None and metric.kind in METRICS:
                takes = getattr(METRICS.get(metric.kind), "predictions", "completion")
                if takes != "completion":
                    raise ValueError(
                        f"metric '{metric.kind}' scores {takes}, not one answer per row; use a "
                        "metric of completions (exact_match, toolkit_match) or a verifier"
                    )
            return self

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    @classmethod
    def result_metrics(cls, params: dict[str, Any], backend: str) -> list[str]:
        """``metrics``, and what its hosted models spent (``train/task/cost_usd``, …)."""
        from evsys.prompt_tuning.spend import declared_spend

        return [*cls.metrics, *declared_spend(params)]

    def train(self, ctx: RunContext) -> RunResult:
        gepa = _import_gepa()
        from evsys.prompt_tuning.adapter import COMPONENT
        from evsys.prompt_tuning.history import SearchHistory
        from evsys.prompt_tuning.system_prompt import SystemPromptClient

        cfg, checkpoint = self.cfg, ctx.config.model.load_checkpoint_path
        train_rows, val_rows = self._split(ctx)
        self._check_budget(len(val_rows))

        # No weights are trained: free the trainer's copy before the task model is loaded.
        ctx.backend.teardown(ctx.handles)
        adapter, reflect, spend = self._models(ctx.config, checkpoint)
        # Each iteration logs its metrics and scores the `val` benchmarks under the best prompt.
        history = SearchHistory(
            ctx.log_store,
            COMPONENT,
            on_iteration=lambda step, best: ctx.validate(
                step, lambda: SystemPromptClient(adapter.client, best)
            ),
        )
        log.info(
            "gepa_prompt: %d training and %d validation rows, %s, budget %d metric calls",
            len(train_rows),
            len(val_rows),
            adapter.scorer.name,
            cfg.max_metric_calls,
        )
        seed_prompt = cfg.seed_prompt or _shared_system_prompt(train_rows + val_rows)
        result = gepa.optimize(
            seed_candidate={COMPONENT: seed_prompt},
            trainset=train_rows,
            valset=val_rows,
            adapter=adapter,
            reflection_lm=reflect,
            reflection_prompt_template=cfg.reflection_prompt_template,
            candidate_selection_strategy=cfg.candidate_selection,
            reflection_minibatch_size=cfg.reflection_minibatch_size,
            use_merge=cfg.use_merge,
            max_metric_calls=cfg.max_metric_calls,
            callbacks=[history],
            logger=_GepaLog(),
            seed=ctx.seed,
            raise_on_exception=True,  # a reflection or task model that is down ends the run
        )
        return self._record(ctx, result, history, checkpoint, spend.metrics())

    # -- parts --------------------------------------------------------------------------------

    def _models(
        self, config: ExperimentConfig, checkpoint: str | None
    ) -> tuple[SystemPromptAdapter, Callable[[str | list[dict[str, Any]]], str], SearchSpend]:
        """GEPA's adapter (the task model and the scorer), its reflection model, and what
        they spend."""
        from evsys.prompt_tuning.adapter import SystemPromptAdapter
        from evsys.prompt_tuning.scoring import RowScorer
        from evsys.prompt_tuning.spend import SearchSpend

        cfg = self.cfg
        task = _client(config, cfg.task_model, checkpoint)
        reflection = task
        if cfg.reflection_model is not None:
            reflection = _client(config, cfg.reflection_model, checkpoint)
        adapter = SystemPromptAdapter(
            task,
            RowScorer(self._scorer_spec(config)),
            max_tokens=cfg.max_tokens or config.eval.max_tokens,
            temperature=config.eval.temperature if cfg.temperature is None else cfg.temperature,
        )

        def reflect(prompt: str | list[dict[str, Any]]) -> str:
            return reflection.generate(
                prompt=prompt,
                max_tokens=cfg.reflection_max_tokens,
                temperature=cfg.reflection_temperature,
            )

        return adapter, reflect, SearchSpend(task, reflection, adapter.scorer)

    def _record(
        self,
        ctx: RunContext,
        result: GEPAResult,
        history: SearchHistory,
        checkpoint: str | None,
        spend: dict[str, float],
    ) -> RunResult:
        """The best prompt as the artifact ``best_prompt``, the history as a file, the metrics
        (with what the hosted models spent)."""
        from evsys.prompt_tuning.adapter import COMPONENT
        from evsys.prompt_tuning.history import HISTORY_FILE
        from evsys.prompt_tuning.system_prompt import BEST_PROMPT, BEST_PROMPT_FILE

        best = result.best_candidate[COMPONENT]
        prompt_path = ctx.run_dir / BEST_PROMPT_FILE
        write_text_atomically(prompt_path, best)
        history.write(ctx.run_dir / HISTORY_FILE, result)
        artifacts = {BEST_PROMPT: str(prompt_path)}
        if checkpoint is not None:  # the weights it started from are still the model's
            artifacts["final_checkpoint"] = checkpoint
        for name, path in artifacts.items():
            ctx.log_store.log_artifact(name, path)
        metrics = {
            "train/steps": float(history.iterations),
            "gepa/seed_val_score": float(result.val_aggregate_scores[0]),
            "gepa/best_val_score": float(result.val_aggregate_scores[result.best_idx]),
            "gepa/num_candidates": float(result.num_candidates),
            "gepa/metric_calls": float(result.total_metric_calls or 0),
            **spend,
        }
        log.info(
            "gepa_prompt: validation score %.4g → %.4g over %d candidates",
            metrics["gepa/seed_val_score"],
            metrics["gepa/best_val_score"],
            result.num_candidates,
        )
        return RunResult(
            run_id=ctx.run_id,
            status="completed",
            metrics=metrics,
            artifacts=artifacts,
            extras={"best_prompt": best},
        )

    def _split(self, ctx: RunContext) -> tuple[list[Row], list[Row]]:
        """Rows for reflection and rows for validation, both as prompt-tuning examples."""
        from evsys.data.sources import apply_transforms, load_rows
        from evsys.prompt_tuning.examples import task_rows

        rows = task_rows(ctx.train_rows)
        if self.cfg.val_data is not None:
            data = self.cfg.val_data
            val = task_rows(apply_transforms(load_rows(data, ctx.data_store), data.transforms))
            if not rows or not val:
                raise ConfigError(
                    f"gepa_prompt needs training and validation rows; got {len(rows)} and "
                    f"{len(val)} (algorithm.params.val_data)"
                )
            return rows, val
        if len(rows) < 2:
            raise ConfigError(
                Problem(
                    path="data",
                    message=f"gepa_prompt needs at least 2 training rows (some to reflect on, "
                    f"some to validate candidates); got {len(rows)}",
                    value=len(rows),
                )
            )
        shuffled = list(rows)
        random.Random(ctx.seed).shuffle(shuffled)
        n_val = min(len(rows) - 1, max(1, round(len(rows) * self.cfg.val_fraction)))
        return shuffled[n_val:], shuffled[:n_val]

    def _check_budget(self, n_val: int) -> None:
        # Scoring the seed prompt takes one call per validation row; with no budget left after
        # it, the search would end before trying a single candidate.
        if self.cfg.max_metric_calls <= n_val:
            raise ConfigError(
                Problem(
                    path="algorithm.params.max_metric_calls",
                    message=f"the budget is spent scoring the seed prompt on the {n_val} "
                    "validation rows, so no candidate would be tried; raise it, or validate on "
                    "fewer rows (val_fraction, val_data)",
                    value=self.cfg.max_metric_calls,
                    expected=f"more than {n_val}, e.g. "
                    f"{n_val + 4 * (2 * self.cfg.reflection_minibatch_size + n_val)} for 4 "
                    "candidates",
                )
            )

    def _scorer_spec(self, config: ExperimentConfig) -> VerifierSpec | MetricSpec:
        if self.cfg.verifier is not None:
            return self.cfg.verifier
        if self.cfg.metric is not None:
            return self.cfg.metric
        for spec in config.eval.metrics:  # the run's own metric, if it scores one answer
            if getattr(METRICS.get(spec.kind), "predictions", "completion") == "completion":
                return spec
        return VerifierSpec(kind="exact_match")


def _client(
    config: ExperimentConfig, spec: InferenceSpec | None, checkpoint: str | None
) -> InferenceClient:
    """The client ``spec`` names (None: the eval's), with the run's model and checkpoint filled
    in where it leaves them unset, as eval builds its own."""
    from evsys.run.evaluation import build_inference_client

    if spec is not None:
        config = config.model_copy(
            update={"eval": config.eval.model_copy(update={"inference": spec})}
        )
    return build_inference_client(config, checkpoint)


def _shared_system_prompt(rows: list[Row]) -> str:
    """The system prompt every row opens with (the one data.transforms gave them), else the
    default."""
    from evsys.prompt_tuning.system_prompt import system_prompt_of

    prompts = {system_prompt_of(row.get("messages") or []) for row in rows}
    shared = prompts.pop() if len(prompts) == 1 else None
    return shared or DEFAULT_SEED_PROMPT


def _import_gepa() -> Any:
    try:
        import gepa
    except ImportError:
        raise MissingDependencyError("gepa", "gepa", "The gepa_prompt recipe") from None
    return gepa


class _GepaLog:
    """GEPA's progress lines (every row's score of every candidate) at debug level in evsys's log,
    not on stdout; the metrics of each iteration are logged at info level by the history."""

    def log(self, message: str) -> None:
        log.debug("gepa: %s", message)
