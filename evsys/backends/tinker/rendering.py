"""Chat rows → tokens, with the model's own chat template (transformers), for the Tinker API.

A training row becomes a ``tinker.types.Datum``: the conversation's tokens shifted by one (input
``t[:-1]``, targets ``t[1:]``) and a weight per target, 1 on the assistant's tokens. The weights
come from the template's ``{% generation %}`` markers where it has them, else from rendering the
conversation one message at a time (the tokens a message adds belong to it).
"""

from __future__ import annotations

import re
from typing import Any

from evsys.errors import BackendError
from evsys.rows import assistant_text, prompt_messages

Messages = list[dict[str, Any]]
_GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")


def load_tokenizer(name: str, renderer: str | None = None) -> Any:
    """The tokenizer of ``name``: a local directory, a model evsys builds, or a Hugging Face id
    already in the cache (nothing is downloaded). ``renderer`` (``model.renderer_name``) replaces
    its chat template with that renderer's (:mod:`evsys.renderers`)."""
    from transformers import AutoTokenizer

    from evsys.backends.local.models import quiet_libraries, resolve_model_path

    try:
        path = resolve_model_path(name)
    except BackendError as exc:
        raise BackendError(
            f"the tinker backend renders chats with the model's own tokenizer, and {exc} "
            "Or set backend.params.tokenizer to a local tokenizer directory."
        ) from None
    with quiet_libraries():
        tokenizer = AutoTokenizer.from_pretrained(path)
    if renderer is not None:
        from evsys.renderers import TEMPLATES, renderer_problem

        problem = renderer_problem(renderer)
        if problem:
            raise BackendError(problem)
        tokenizer.chat_template = TEMPLATES[renderer]
    if not tokenizer.chat_template:
        raise BackendError(f"the tokenizer of '{name}' ({path}) has no chat template")
    return tokenizer


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


def datum(
    tokenizer: Any, row: dict[str, Any], *, max_length: int, assistant_only: bool
) -> tuple[Any, int] | None:
    """``(Datum, trained tokens)`` for a chat row, or None when truncation leaves nothing to
    train on."""
    import numpy as np
    from tinker import types

    messages = conversation(row)
    if assistant_only:
        tokens, mask = chat_tokens(tokenizer, messages)
    else:
        tokens = _encode(tokenizer, messages)
        mask = [1] * len(tokens)
    tokens, weights = tokens[:max_length], mask[1:max_length]
    if sum(weights) == 0:
        return None
    return (
        types.Datum(
            model_input=types.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={
                "target_tokens": np.asarray(tokens[1:], dtype=np.int64),
                "weights": np.asarray(weights, dtype=np.float32),
            },
        ),
        sum(weights),
    )


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
