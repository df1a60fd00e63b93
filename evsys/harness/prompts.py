"""Prompt helpers: system prompts, Qwen chat rendering, answer extraction, eval dataset loading."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from evsys.answers import ANSWER_TAG
from evsys.data.images import inline_row_images
from evsys.data.jsonl import iter_numbered_objects, open_text
from evsys.errors import DataError
from evsys.rows import Message, prompt_messages

DEFAULT_SYSTEM = (
    "You are a precise assistant. Think briefly if you need to, then give your final answer "
    "inside <answer></answer> tags, with nothing else in the tags."
)
DEFAULT_SYSTEM_NO_THINK = DEFAULT_SYSTEM + " /no_think"
"""For Qwen3: ``/no_think`` in the system prompt turns its thinking mode off."""

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
_SLUG = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def with_system(messages: list[Message], system: str | None) -> list[Message]:
    """``messages`` with ``system`` as the first turn, unless they open with a system turn already."""
    if system is None or (messages and messages[0].get("role") == "system"):
        return list(messages)
    return [{"role": "system", "content": system}, *messages]


def qwen_chat_prompt(prompt: str | list[Message], system: str | None = DEFAULT_SYSTEM) -> str:
    """The ChatML text Qwen models are trained on, open for the assistant's reply.

    For engines that take raw text (a completions endpoint, a bare model without a chat template).
    """
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    turns = "".join(
        f"<|im_start|>{m['role']}\n{m.get('content') or ''}<|im_end|>\n"
        for m in with_system(messages, system)
    )
    return turns + "<|im_start|>assistant\n"


def qwen3_chat_template_prompt(
    prompt: str | list[Message],
    system: str | None = DEFAULT_SYSTEM,
    *,
    enable_thinking: bool = False,
) -> str:
    """Qwen3's chat template rendered as text; without thinking, the empty think block its
    template inserts (``enable_thinking=False``) is there, so the model answers at once."""
    text = qwen_chat_prompt(prompt, system)
    return text if enable_thinking else text + "<think>\n\n</think>\n\n"


def extract_predicted_slug(text: str | None) -> str | None:
    """The tool slug (``UPPER_SNAKE_CASE``) a completion names: the ``<answer>`` content if there
    is one, else the last slug outside any ``<think>`` block, else the stripped text."""
    if text is None:
        return None
    visible = _THINK.sub("", text)
    tagged = ANSWER_TAG.findall(visible)
    if tagged:
        return tagged[-1].strip()
    slugs = _SLUG.findall(visible)
    return slugs[-1] if slugs else visible.strip()


def load_eval_dataset(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows and metadata of ``path``: a JSONL file of rows, or a harbor benchmark directory
    (``tasks.jsonl`` + optional ``metadata.yaml``). DataError names the file and line at fault."""
    from evsys.benchmarks import as_eval_row, read_benchmark

    path = Path(path)
    if path.is_dir():
        return read_benchmark(path, where=str(path))
    if not path.exists():
        raise DataError(f"{path}: no such file (expected a JSONL file or a benchmark directory)")
    rows = []
    with open_text(path) as handle:
        for number, row in iter_numbered_objects(handle, str(path)):
            if "instruction" in row:  # a harbor task in a plain JSONL file
                try:
                    row = as_eval_row(row)
                except DataError as exc:
                    raise DataError(f"{path}:{number}: {exc}") from None
            if "prompt" not in row and not row.get("messages"):
                raise DataError(
                    f"{path}:{number}: a row needs 'prompt', 'messages' or 'instruction' to "
                    f"generate from (keys: {', '.join(sorted(row))})"
                )
            # Image files it names are read now, from the images/ folder beside the file.
            rows.append(inline_row_images(row, path.parent, f"{path}:{number}"))
    if not rows:
        raise DataError(f"{path}: holds no rows")
    return rows, {}


def render_prompt(row: dict[str, Any], *, system: str | None, template: str) -> str | list[Message]:
    """What the client is sent for ``row``: chat messages, or text in a Qwen template."""
    messages = with_system(prompt_messages(row), system)
    if template == "qwen":
        return qwen_chat_prompt(messages, system=None)
    if template == "qwen3":
        return qwen3_chat_template_prompt(messages, system=None)
    return messages
