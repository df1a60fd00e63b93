"""Reading the parts of a row that training and eval need, whatever its shape.

Rows are plain dicts: prompt/answer rows (``{"prompt", "answer"}``), chat rows
(``{"messages": [...]}``, as ``jsonl_to_chat`` makes them) or prompt-dataset rows
(``{"inputs": {...}, "expected": ...}``, :class:`evsys.data.types.PromptExample`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evsys.errors import DataError

Message = dict[str, Any]


def prompt_messages(row: dict[str, Any]) -> list[Message]:
    """The conversation up to (not including) the final assistant turn."""
    messages = row.get("messages")
    if messages:
        end = len(messages)
        while end and messages[end - 1].get("role") == "assistant":
            end -= 1
        return list(messages[:end])
    return [{"role": "user", "content": prompt_text(row)}]


def prompt_text(row: dict[str, Any]) -> str:
    """``row["prompt"]``, else the content of the last user message, else the row's ``inputs``."""
    if "prompt" in row:
        return str(row["prompt"])
    for message in reversed(row.get("messages") or []):
        if message.get("role") == "user":
            return _text(message.get("content"))
    if isinstance(row.get("inputs"), dict):
        return render_inputs(row["inputs"])
    raise DataError(f"row has neither 'prompt' nor a user message (keys: {sorted(row)})")


def assistant_text(row: dict[str, Any]) -> str:
    """What the model should answer: the final assistant turn, else ``target_assistant``/``answer``."""
    messages = row.get("messages") or []
    if messages and messages[-1].get("role") == "assistant":
        return _text(messages[-1].get("content"))
    for key in ("target_assistant", "answer", "tool_slug", "expected"):
        if key in row:
            return str(row[key])
    raise DataError(
        f"row has no assistant turn, 'target_assistant', 'answer' or 'expected' (keys: {sorted(row)})"
    )


def render_inputs(inputs: dict[str, Any]) -> str:
    """A prompt-dataset row's named inputs as one user message: a lone input as itself, several
    as ``name: value`` lines."""
    if len(inputs) == 1:
        return str(next(iter(inputs.values())))
    return "\n".join(f"{name}: {value}" for name, value in inputs.items())


def indices_by_value(rows: Sequence[dict[str, Any]], key: str) -> dict[str, list[int]]:
    """Row indices grouped by the value of ``key`` (on the row, else in its ``metadata``)."""
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        value = row.get(key, (row.get("metadata") or {}).get(key))
        groups.setdefault(str(value), []).append(index)
    return groups


def _text(content: Any) -> str:
    """Message content as text; multimodal block lists keep only their text blocks."""
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return "" if content is None else str(content)
