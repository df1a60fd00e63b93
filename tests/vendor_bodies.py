"""Answers of the vendor test servers (:mod:`vendor_servers`) besides a model's answer: a
refusal, a content filter or a safety block, and a hollow body, in each vendor's wire format.

Each is the vendor's own response to the request, then changed the way the vendor changes it:

- ``refusal`` (every vendor): OpenAI's ``message.refusal`` (content null), Anthropic's
  ``stop_reason: "refusal"`` (no content), Gemini's candidate stopped with
  ``finishReason: "SAFETY"`` (no content, its safety ratings);
- ``content_filter`` (OpenAI): ``finish_reason: "content_filter"``, content null;
- ``blocked`` (Gemini): the prompt blocked, ``promptFeedback.blockReason: "SAFETY"``, no
  candidates;
- ``hollow`` (every vendor): the response with its choices, content or candidates left out
  (a malformed body: a client retries it).

A refusal is metered like an answer: its usage counts the prompt, and the refusal's words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REFUSAL_TEXT = "I'm sorry, but I can't help with that."
SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
]
Body = dict[str, Any]


def _openai_refusal(body: Body) -> Body:
    for choice in body["choices"]:
        choice["message"].update(content=None, refusal=choice["message"]["content"])
    return body


def _openai_content_filter(body: Body) -> Body:
    for choice in body["choices"]:
        choice["message"]["content"] = None
        choice["finish_reason"] = "content_filter"
    return body


def _anthropic_refusal(body: Body) -> Body:
    return {**body, "content": [], "stop_reason": "refusal"}


def _gemini_refusal(body: Body) -> Body:
    for candidate in body["candidates"]:
        del candidate["content"]
        candidate.update(finishReason="SAFETY", safetyRatings=SAFETY_RATINGS)
    return body


def _gemini_blocked(body: Body) -> Body:
    prompt = body["usageMetadata"]["promptTokenCount"]
    return {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": SAFETY_RATINGS},
        "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt},
        "modelVersion": body["modelVersion"],
    }


def _without(field: str) -> Callable[[Body], Body]:
    return lambda body: {k: v for k, v in body.items() if k != field}


BODIES: dict[str, dict[str, Callable[[Body], Body]]] = {
    "openai": {
        "refusal": _openai_refusal,
        "content_filter": _openai_content_filter,
        "hollow": _without("choices"),
    },
    "anthropic": {"refusal": _anthropic_refusal, "hollow": _without("content")},
    "gemini": {
        "refusal": _gemini_refusal,
        "blocked": _gemini_blocked,
        "hollow": _without("candidates"),
    },
}
"""Protocol → the answers its server can give besides a model's."""
REFUSALS = frozenset({"refusal", "content_filter", "blocked"})


def vendor_body(protocol: str, name: str, respond: Callable[[list[str]], Body], n: int) -> Body:
    """The body ``name`` of ``protocol`` for a request of ``n`` samples; ``respond(texts)``: the
    server's own response with those texts."""
    return BODIES[protocol][name](respond([REFUSAL_TEXT] * n))
