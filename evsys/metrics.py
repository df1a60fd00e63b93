"""Built-in metrics: aggregate a column of predictions against their targets into one number.

Every metric is called as ``compute(predictions=..., targets=...)`` with one entry per row, and
refuses empty or mismatched input rather than return a score that means nothing. ``predictions``
says what one entry is (see :data:`PredictionKind`); a metric without it takes completions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from math import comb
from typing import Any, ClassVar, Literal

from pydantic import Field

from evsys.answers import extract_answer, is_correct
from evsys.config import InferenceSpec, Strict
from evsys.errors import BackendError, DataError
from evsys.protocols import VerificationResult
from evsys.registry import register_metric
from evsys.rows import prompt_text
from evsys.task_verifiers import RowVerifier

# What one prediction of a row is: the completion generated for it (what a run's eval and its
# benchmarks produce), every completion sampled for it (`evsys eval model --num-samples`), or a
# reward.
PredictionKind = Literal["completion", "samples", "reward"]


def _check_rows(predictions: Sequence[Any], targets: Sequence[Any]) -> None:
    if len(predictions) != len(targets):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(targets)} targets; "
            "a metric needs exactly one prediction per target"
        )
    if not predictions:
        raise ValueError("no rows to score: predictions and targets are empty")


@register_metric("exact_match")
class ExactMatch:
    """Fraction of rows whose extracted, normalized answer equals the target's answer."""

    predictions: ClassVar[PredictionKind] = "completion"

    class Config(Strict):
        pass

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def compute(self, *, predictions: Sequence[Any], targets: Sequence[Any]) -> float:
        _check_rows(predictions, targets)
        return sum(map(is_correct, predictions, targets)) / len(predictions)


def pass_at_k_estimate(n: int, c: int, k: int) -> float:
    """Unbiased probability that at least one of ``k`` samples is correct, from ``n`` samples of
    which ``c`` are correct: ``1 - C(n-c, k) / C(n, k)``.

    Chen et al. 2021, "Evaluating Large Language Models Trained on Code" (arXiv:2107.03374), §2.1.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if n < k:
        raise ValueError(f"pass@{k} needs at least k={k} samples, got n={n}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


@register_metric("pass_at_k")
class PassAtK:
    """Mean over rows of the unbiased pass@k estimate; each prediction is a list of n samples."""

    predictions: ClassVar[PredictionKind] = "samples"

    class Config(Strict):
        k: int = Field(
            1, ge=1, description="Samples allowed per row; every row needs at least k samples."
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def compute(self, *, predictions: Sequence[Any], targets: Sequence[Any]) -> float:
        _check_rows(predictions, targets)
        k, total = self.cfg.k, 0.0
        for row, (samples, target) in enumerate(zip(predictions, targets, strict=True)):
            if isinstance(samples, str) or not isinstance(samples, Sequence):
                raise TypeError(
                    f"pass_at_k: row {row}'s prediction must be a list of sampled completions, "
                    f"got {type(samples).__name__}"
                )
            n = len(samples)
            if n < k:
                raise ValueError(f"pass_at_k: row {row} has n={n} samples, fewer than k={k}")
            c = sum(is_correct(sample, target) for sample in samples)
            total += pass_at_k_estimate(n, c, k)
        return total / len(predictions)


@register_metric("mean_reward")
class MeanReward:
    """Mean of the predictions, which are rewards (numbers); targets are ignored."""

    predictions: ClassVar[PredictionKind] = "reward"

    class Config(Strict):
        pass

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def compute(self, *, predictions: Sequence[Any], targets: Sequence[Any]) -> float:
        if not predictions:
            raise ValueError("no rows to score: predictions are empty")
        total = 0.0
        for row, reward in enumerate(predictions):
            try:
                total += float(reward)
            except (TypeError, ValueError):
                raise TypeError(
                    f"mean_reward: row {row}'s prediction must be a number (a reward), "
                    f"got {type(reward).__name__}: {reward!r}"
                ) from None
        return total / len(predictions)


@register_metric("pass_rate")
class PassRate:
    """Mean reward of each row's own harbor verifier on its prediction: the fraction of tasks
    passed, for verifiers that pass or fail. A failed generation (None) scores 0; a row without
    a verifier (not a harbor task) is an error."""

    class Config(Strict):
        judge: InferenceSpec | None = Field(
            None,
            description=(
                "The inference client ({kind, params}, e.g. openai_compatible with its base_url) "
                "that scores llm_judge tasks, asked as each task's judge_model. None: llm_judge "
                "tasks are refused."
            ),
        )

    needs_reference: ClassVar[bool] = False
    """Rows are scored by their own verifiers: a task needs no expected answer."""

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)
        self._verifier = RowVerifier(None, judge=self.cfg.judge)
        # Breakdowns score subsets of the same rows again: a verdict (a paid judge call, a
        # sandbox run) is computed once per row and completion.
        self._verdicts: dict[str, VerificationResult] = {}

    def compute(self, *, predictions: Sequence[Any], targets: Sequence[Any]) -> float:
        _check_rows(predictions, targets)
        total = 0.0
        for prediction, row in zip(predictions, targets, strict=True):
            if prediction is not None:
                total += self._result(str(prediction), row).reward
        return total / len(predictions)

    def verdict(self, prediction: Any, row: Any) -> VerificationResult | None:
        """The verdict already given on ``row``'s ``prediction`` (its reward and what the
        verifier said, e.g. a judge's unreadable reply); None if it was not scored."""
        if prediction is None:
            return None
        return self._verdicts.get(_verdict_key(row, str(prediction)))

    def judge_calls(self) -> list[Any]:
        """The calls a judge model answered for this metric (usage: tokens, latency, cost)."""
        return self._verifier.judge_calls()

    def _result(self, completion: str, row: Any) -> VerificationResult:
        key = _verdict_key(row, completion)
        if key not in self._verdicts:
            try:
                self._verdicts[key] = self._verifier.verify(
                    prompt=prompt_text(row), completion=completion, target=row
                )
            except BackendError as exc:  # a judge that is down: say which task it was judging
                where = repr(row.get("id")) if isinstance(row, dict) else "?"
                raise BackendError(f"judging task {where}: {exc}") from exc
        return self._verdicts[key]


def _verdict_key(row: Any, completion: str) -> str:
    return json.dumps([row, completion], sort_keys=True, default=repr)


@register_metric("toolkit_match")
class ToolkitMatch:
    """Fraction of rows whose predicted tool belongs to the target's toolkit.

    The toolkit of a tool slug is its text before the first separator, casefolded:
    ``GMAIL_SEND_EMAIL`` → ``gmail``. Targets are dicts with a ``toolkit`` key.
    """

    predictions: ClassVar[PredictionKind] = "completion"

    class Config(Strict):
        separator: str = Field(
            "_", min_length=1, description="Splits a tool slug; the part before it is the toolkit."
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def compute(self, *, predictions: Sequence[Any], targets: Sequence[Any]) -> float:
        _check_rows(predictions, targets)
        hits = 0
        for row, (prediction, target) in enumerate(zip(predictions, targets, strict=True)):
            if not isinstance(target, dict) or "toolkit" not in target:
                raise DataError(
                    f"toolkit_match: row {row}'s target must be a dict with a 'toolkit' key, "
                    f"got {target!r}"
                )
            slug = extract_answer(str(prediction)) if prediction is not None else ""
            predicted = slug.split(self.cfg.separator, 1)[0].strip().casefold()
            hits += predicted == str(target["toolkit"]).strip().casefold()
        return hits / len(predictions)
