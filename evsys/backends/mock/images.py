"""What the mock model reads of a prompt: its text, and a fingerprint of each image it shows.

The mock model has no eyes, but it does not drop images either: each image of the prompt's
messages becomes a word ``image<12 hex digits>`` (a digest of its source: the inline data or the
URL) before the text, so the same question over two images is two prompts it can tell apart and
learn two answers for, deterministically.
"""

from __future__ import annotations

import hashlib
from typing import Any

from evsys.clients.content import blocks, image_source
from evsys.rows import prompt_messages, prompt_text

_IMAGE_BLOCKS = ("image_url", "image")


def seen_prompt(row: dict[str, Any]) -> str:
    """``prompt_text(row)``, after a fingerprint word per image of the row's prompt."""
    text = prompt_text(row)
    tags = [image_word(block) for block in _image_blocks(prompt_messages(row))]
    return " ".join([*tags, text]) if tags else text


def image_word(block: Any) -> str:
    how, value, _ = image_source(block)
    return "image" + hashlib.sha256(f"{how}:{value}".encode()).hexdigest()[:12]


def _image_blocks(messages: list[dict[str, Any]]) -> list[Any]:
    return [
        block
        for message in messages
        if isinstance(message.get("content"), list)
        for block in blocks(message["content"])
        if block.get("type") in _IMAGE_BLOCKS
    ]
