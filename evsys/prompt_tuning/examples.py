"""Rows of any shape as examples for prompt tuning: what the task model is asked, what is right.

The search trains on the rows the run loads (``data``): prompt/answer rows, chat rows, harbor
tasks and prompt-dataset rows (:class:`evsys.data.types.PromptExample`). Each becomes a row
that :func:`evsys.rows.prompt_messages` turns into the task model's conversation and whose
``answer`` a verifier or metric compares the completion with.
"""

from __future__ import annotations

from typing import Any

from evsys.answers import extract_answer
from evsys.benchmarks import as_eval_row
from evsys.data.types import TargetFormat, detect_format
from evsys.errors import DataError
from evsys.protocols import Row
from evsys.rows import assistant_text, prompt_messages, render_inputs


def task_rows(rows: list[Row]) -> list[Row]:
    """``rows`` as examples the task model answers; a row that cannot be one raises DataError
    naming its index."""
    out = []
    for index, row in enumerate(rows):
        try:
            example = task_row(row)
            prompt_messages(example)  # a row without a prompt fails here, not mid-search
        except DataError as exc:
            raise DataError(f"gepa_prompt: training row {index}: {exc}") from None
        out.append(example)
    return out


def task_row(row: Row) -> Row:
    """One row as a prompt-tuning example (see the module docstring)."""
    kind = detect_format(row)
    if kind == TargetFormat.HARBOR_TASK:
        return as_eval_row(row)
    if kind == TargetFormat.PROMPT_DATASET and "prompt" not in row:
        return _prompt_example_row(row)
    if kind == TargetFormat.CHAT_MESSAGES and "answer" not in row:
        # The answer inside the assistant turn (<answer>X</answer> → X), as exact_match reads it.
        return {**row, "answer": extract_answer(assistant_text(row))}
    return row


def _prompt_example_row(row: Row) -> Row:
    """``{"inputs", "expected", "metadata"}`` → a prompt/answer row (metadata keys on top, so
    breakdowns and toolkit_match find them)."""
    metadata: dict[str, Any] = row.get("metadata") or {}
    if "expected" not in row or row["expected"] is None:
        raise DataError("a prompt_dataset row needs `expected`, the answer it is scored against")
    return {
        **metadata,
        **{k: v for k, v in row.items() if k not in ("inputs", "expected", "metadata")},
        "prompt": render_inputs(row["inputs"]),
        "answer": row["expected"],
    }
