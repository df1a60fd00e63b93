"""The eval harness: score any inference client on a set of rows, with retries that never drop a
row silently, alias-aware pass@k, per-row predictions and a summary (reference §12).

``evaluate_model(ModelEvalConfig(...))`` is what ``evsys eval model`` runs; the pieces
(``call_with_retry``, ``AliasMatcher``, ``score_rows``, the prompt helpers) work on their own.
"""

from evsys.harness.aliases import AliasMatcher
from evsys.harness.config import ModelEvalConfig
from evsys.harness.evaluate import EvalArtifacts, EvalSummary, build_client, evaluate_model
from evsys.harness.prompts import (
    DEFAULT_SYSTEM,
    DEFAULT_SYSTEM_NO_THINK,
    extract_predicted_slug,
    load_eval_dataset,
    qwen3_chat_template_prompt,
    qwen_chat_prompt,
)
from evsys.harness.retry import RetriesExhausted, RetryFailure, RetryReport, call_with_retry
from evsys.harness.scoring import ScoredRows, score_rows
from evsys.harness.summary import format_summary_markdown

__all__ = [
    "DEFAULT_SYSTEM",
    "DEFAULT_SYSTEM_NO_THINK",
    "AliasMatcher",
    "EvalArtifacts",
    "EvalSummary",
    "ModelEvalConfig",
    "RetriesExhausted",
    "RetryFailure",
    "RetryReport",
    "ScoredRows",
    "build_client",
    "call_with_retry",
    "evaluate_model",
    "extract_predicted_slug",
    "format_summary_markdown",
    "load_eval_dataset",
    "qwen3_chat_template_prompt",
    "qwen_chat_prompt",
    "score_rows",
]
