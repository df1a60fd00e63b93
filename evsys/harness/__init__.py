"""The eval harness: score any inference client on a set of rows, with retries that never drop a
row silently, alias-aware pass@k, per-row predictions and a summary (reference §12).

``evaluate_model(ModelEvalConfig(...))`` is what ``evsys eval model`` runs; the pieces
(``call_with_retry``, ``AliasMatcher``, ``score_rows``, the prompt helpers) work on their own.
"""

from __future__ import annotations

from evsys._lazy import lazy_exports

# Imported on first use: the inference-client registry loads openai_compatible from this
# package whenever a config is validated, and needs none of the rest.
_EXPORTS = {
    "AliasMatcher": "evsys.harness.aliases",
    "ModelEvalConfig": "evsys.harness.config",
    "EvalArtifacts": "evsys.harness.evaluate",
    "EvalSummary": "evsys.harness.evaluate",
    "build_client": "evsys.harness.evaluate",
    "evaluate_model": "evsys.harness.evaluate",
    "DEFAULT_SYSTEM": "evsys.harness.prompts",
    "DEFAULT_SYSTEM_NO_THINK": "evsys.harness.prompts",
    "extract_predicted_slug": "evsys.harness.prompts",
    "load_eval_dataset": "evsys.harness.prompts",
    "qwen3_chat_template_prompt": "evsys.harness.prompts",
    "qwen_chat_prompt": "evsys.harness.prompts",
    "RetriesExhausted": "evsys.harness.retry",
    "RetryFailure": "evsys.harness.retry",
    "RetryReport": "evsys.harness.retry",
    "call_with_retry": "evsys.harness.retry",
    "ScoredRows": "evsys.harness.scoring",
    "score_rows": "evsys.harness.scoring",
    "format_summary_markdown": "evsys.harness.summary",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
