"""Chat rows → tokens, with the model's own chat template (transformers): the rendering every
backend and recipe shares, apart from any one backend.

The assistant's tokens are found from the template's ``{% generation %}`` markers where it has
them, else by rendering the conversation one message at a time (the tokens a message adds belong
to it).
"""

from __future__ import annotations

import re
from typing import Any

from evsys.errors import BackendError
from evsys.rows import assistant_text, prompt_messages

Messages = list[dict[str, Any]]
_GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")


def conversation(row: dict[str, Any]) -> Messages:
    """The row's messages; a prompt/answer row becomes a user turn and an assistant turn."""
    if row.get("messages"):
        return row["messages"]
    return [*prompt_messages(row), {"role": "assistant", "content": assistant_text(row)}]


def prompt_tokens(tokenizer: Any, messages: Messages | str) -> list[int]:
    """The conversation so far, ending with the header of the assistant's turn."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return _encode(tokenizer, messages, add_generation_prompt=True)


def chat_tokens(tokenizer: Any, messages: Messages) -> tuple[list[int], list[int]]:
    """The conversation's tokens and a 0/1 mask, 1 on the tokens the assistant wrote."""
    if _GENERATION_BLOCK.search(tokenizer.chat_template or ""):
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        return list(out["input_ids"]), list(out["assistant_masks"])
    tokens: list[int] = []
    mask: list[int] = []
    for i, message in enumerate(messages):
        if message.get("role") == "assistant":  # the turn's header is the prompt's, not its own
            header = _encode(tokenizer, messages[:i], add_generation_prompt=True)
            mask += [0] * _extension(tokens, header, tokenizer)
            tokens = header
        rendered = _encode(tokenizer, messages[: i + 1])
        mask += [int(message.get("role") == "assistant")] * _extension(tokens, rendered, tokenizer)
        tokens = rendered
    return tokens, mask


def full_tokens(tokenizer: Any, messages: Messages) -> list[int]:
    """The whole conversation's tokens."""
    return _encode(tokenizer, messages)


def _encode(tokenizer: Any, messages: Messages, add_generation_prompt: bool = False) -> list[int]:
    if not messages:
        return []
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(out["input_ids"])


def _extension(prefix: list[int], tokens: list[int], tokenizer: Any) -> int:
    """How many tokens ``tokens`` adds to ``prefix``; an error if it does not extend it."""
    if tokens[: len(prefix)] != prefix:
        raise BackendError(
            f"the chat template of {tokenizer.name_or_path!r} renders a conversation's start "
            "differently once more messages follow, so the assistant's tokens cannot be told "
            "apart; add {% generation %} … {% endgeneration %} markers around the assistant "
            "turns of its chat_template, or set algorithm.params.assistant_only_loss=false"
        )
    return len(tokens) - len(prefix)
