"""Chat messages in each vendor's shape.

Rows carry the harbor content blocks (:mod:`evsys.data.types`): ``{"type": "text", "text"}``,
images by URL in the OpenAI shape (``{"type": "image_url", "image_url": {"url", "detail"}}``) and
inline images in the Anthropic shape (``{"type": "image", "source": {"type": "base64",
"media_type", "data"}}``). Each vendor gets them converted to the shape its API takes; a block
it cannot take is refused with a DataError naming the block, before any call is made.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from collections.abc import Mapping
from typing import Any

from evsys.errors import DataError

Message = dict[str, Any]
_DATA_URL = re.compile(r"^data:(?P<media_type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)


def as_messages(prompt: str | list[Message]) -> list[Message]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def with_system(messages: list[Message], system: str | None) -> list[Message]:
    """``messages`` opened by ``system``, unless they have a system turn already."""
    if system is None or any(m.get("role") == "system" for m in messages):
        return messages
    return [{"role": "system", "content": system}, *messages]


def blocks(content: Any) -> list[Mapping[str, Any]]:
    """A message's content as a list of blocks (a plain string is one text block)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, Mapping) for b in content):
        return content
    raise DataError(f"message content must be a string or a list of blocks, got {content!r:.80}")


def text_only(content: Any, vendor: str, role: str) -> str:
    """The text of a turn that takes no images (a system prompt)."""
    parts = []
    for block in blocks(content):
        if block.get("type") != "text":
            raise DataError(
                f"{vendor}: a {role} turn takes text only, got a {block.get('type')!r} block"
            )
        parts.append(str(block.get("text", "")))
    return "\n\n".join(parts)


def image_source(block: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """``("url", url, None)`` or ``("base64", data, media_type)`` of an image block of either
    shape (a ``data:`` URL is inline data)."""
    if block.get("type") == "image_url":
        image = block.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if not isinstance(url, str) or not url:
            raise DataError(f"an image_url block needs image_url.url, got {dict(block)!r:.120}")
        inline = _DATA_URL.match(url)
        if inline:
            return "base64", inline["data"], inline["media_type"]
        return "url", url, None
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise DataError(f"an image block needs a source, got {dict(block)!r:.120}")
    if source.get("type") == "base64":
        return "base64", str(source.get("data", "")), str(source.get("media_type", "image/png"))
    if source.get("type") == "url":
        return "url", str(source.get("url", "")), None
    raise DataError(f"image source type {source.get('type')!r} is neither 'base64' nor 'url'")


def _unknown(block: Mapping[str, Any], vendor: str) -> DataError:
    return DataError(
        f"{vendor}: cannot send a content block of type {block.get('type')!r}; the blocks "
        "evsys converts are 'text', 'image_url' (OpenAI shape) and 'image' (Anthropic shape)"
    )


# -- OpenAI chat completions -------------------------------------------------------------------


def openai_messages(messages: list[Message]) -> list[Message]:
    out = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str):
            content = [openai_block(b) for b in blocks(content)]
        out.append({"role": message.get("role", "user"), "content": content})
    return out


def openai_block(block: Mapping[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": str(block.get("text", ""))}
    if kind in ("image_url", "image"):
        how, value, media_type = image_source(block)
        url = value if how == "url" else f"data:{media_type};base64,{value}"
        detail = block.get("image_url", {}).get("detail") if kind == "image_url" else None
        return {
            "type": "image_url",
            "image_url": {"url": url, **({"detail": detail} if detail else {})},
        }
    raise _unknown(block, "openai")


# -- Anthropic messages ------------------------------------------------------------------------


def anthropic_request(messages: list[Message]) -> tuple[str | None, list[Message]]:
    """The system prompt (system turns joined) and the user/assistant turns."""
    system = [
        text_only(m.get("content"), "claude", "system")
        for m in messages
        if m.get("role") == "system"
    ]
    turns = [
        {
            "role": m.get("role", "user"),
            "content": [anthropic_block(b) for b in blocks(m.get("content"))],
        }
        for m in messages
        if m.get("role") != "system"
    ]
    return ("\n\n".join(system) if system else None), turns


def anthropic_block(block: Mapping[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": str(block.get("text", ""))}
    if kind in ("image_url", "image"):
        how, value, media_type = image_source(block)
        if how == "url":
            return {"type": "image", "source": {"type": "url", "url": value}}
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": value},
        }
    raise _unknown(block, "claude")


# -- Gemini generateContent --------------------------------------------------------------------


def gemini_request(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """The system instruction and the contents (roles ``user`` and ``model``)."""
    system = [
        text_only(m.get("content"), "gemini", "system")
        for m in messages
        if m.get("role") == "system"
    ]
    contents = [
        {
            "role": "model" if m.get("role") == "assistant" else "user",
            "parts": [gemini_part(b) for b in blocks(m.get("content"))],
        }
        for m in messages
        if m.get("role") != "system"
    ]
    return ("\n\n".join(system) if system else None), contents


def gemini_part(block: Mapping[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return {"text": str(block.get("text", ""))}
    if kind in ("image_url", "image"):
        how, value, media_type = image_source(block)
        if how == "base64":  # the SDK takes the bytes, and sends them base64-encoded
            try:
                data = base64.b64decode(value, validate=True)
            except binascii.Error:
                raise DataError(
                    f"gemini: an inline image is not valid base64: {value[:40]!r}"
                ) from None
            return {"inline_data": {"mime_type": media_type, "data": data}}
        guessed = mimetypes.guess_type(value.split("?")[0])[0] or "image/jpeg"
        return {"file_data": {"file_uri": value, "mime_type": guessed}}
    raise _unknown(block, "gemini")
