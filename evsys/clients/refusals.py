"""What a refusal looks like in each vendor's answer, read from plain values.

A model that declines (a refusal, a content filter, a safety block) answers with HTTP 200 and
a body that says so; each reader here returns why, or None for an answer. The clients raise
:class:`evsys.harness.retry.Refused` for it, so it is counted apart, never taken for an empty
answer nor for a malformed body (which is retried).
"""

from __future__ import annotations

from typing import Any

MAX_REASON_CHARS = 200
"""A refusal message is the model's text: kept short in reports and predictions."""

GEMINI_BLOCKING_FINISH = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
"""Gemini's finish reasons that withhold the answer (its safety, recitation and policy filters)."""


def openai_refusal(finish_reason: Any, refusal: Any) -> str | None:
    """An OpenAI chat-completions choice: ``finish_reason == "content_filter"``, or a
    ``message.refusal`` (the model's own refusal, given instead of content)."""
    if isinstance(refusal, str) and refusal.strip():
        return f"refusal: {refusal.strip()[:MAX_REASON_CHARS]}"
    if finish_reason == "content_filter":
        return "finish_reason content_filter"
    return None


def openai_choice(
    finish_reason: Any, content: Any, refusal: Any, tool_calls: Any
) -> tuple[str, str | None]:
    """``(text, why refused)`` of an OpenAI chat-completions choice (the SDK's or raw JSON's
    fields): "" and the reason for a refusal. Raises ValueError for a choice that has no
    content and says no reason for it (neither refused, nor cut at the token limit, nor a
    tool call): a malformed body, to be retried."""
    why = openai_refusal(finish_reason, refusal)
    if why is not None:
        return "", why
    if isinstance(content, str):
        return content, None
    if content is None and (tool_calls or finish_reason == "length"):
        return "", None
    raise ValueError(f"a choice without content (finish_reason {finish_reason!r})")


def anthropic_refusal(stop_reason: Any) -> str | None:
    """An Anthropic message: ``stop_reason == "refusal"`` (its streaming classifiers stopped
    it; any text before is not the answer)."""
    return "stop_reason refusal" if stop_reason == "refusal" else None


def gemini_prompt_block(block_reason: Any) -> str | None:
    """A Gemini response's ``prompt_feedback.block_reason``: the prompt itself was blocked, and
    no candidate was generated."""
    name = _enum_name(block_reason)
    if not name or name == "BLOCKED_REASON_UNSPECIFIED":
        return None
    return f"prompt blocked ({name})"


def gemini_refusal(finish_reason: Any) -> str | None:
    """A Gemini candidate stopped by a safety, recitation or policy filter."""
    name = _enum_name(finish_reason)
    return f"finish_reason {name}" if name in GEMINI_BLOCKING_FINISH else None


def _enum_name(value: Any) -> str:
    """``"SAFETY"`` of the SDK's enum or of the wire's string (an unknown one stays a string)."""
    return str(getattr(value, "value", value) or "")
