"""Chat rows → Tinker's datums, rendered with the model's own tokenizer and chat template.

A training row becomes a ``tinker.types.Datum``: the conversation's tokens shifted by one (input
``t[:-1]``, targets ``t[1:]``) and a weight per target, 1 on the assistant's tokens (found as
:mod:`evsys.backends.chat_rendering` finds them).
"""

from __future__ import annotations

from typing import Any

from evsys.backends.chat_rendering import chat_tokens

# Chat rendering lived here first; its names stay importable from this module.
from evsys.backends.chat_rendering import conversation as conversation
from evsys.backends.chat_rendering import full_tokens as full_tokens
from evsys.backends.chat_rendering import prompt_tokens as _prompt_tokens
from evsys.errors import BackendError, ConfigError


def load_tokenizer(name: str, renderer: str | None = None) -> Any:
    """The tokenizer of ``name``: a local directory, a model evsys builds, or a Hugging Face id
    already in the cache (nothing is downloaded). ``renderer`` (``model.renderer_name``) replaces
    its chat template with that renderer's (:mod:`evsys.renderers`)."""
    from transformers import AutoTokenizer

    from evsys.backends.models import quiet_libraries, resolve_model_path

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


def datum(
    tokenizer: Any, row: dict[str, Any], *, max_length: int, assistant_only: bool
) -> tuple[Any, int] | None:
    """``(Datum, trained tokens)`` for a chat row, or None when truncation leaves nothing to
    train on."""
    import numpy as np
    from tinker import types

    messages = conversation(row)
    refuse_images(messages)
    if assistant_only:
        tokens, mask = chat_tokens(tokenizer, messages)
    else:
        tokens = full_tokens(tokenizer, messages)
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


def prompt_tokens(tokenizer: Any, messages: list[dict[str, Any]] | str) -> list[int]:
    """The conversation so far, ending with the header of the assistant's turn (refused when it
    shows images: see :func:`refuse_images`)."""
    if not isinstance(messages, str):
        refuse_images(messages)
    return _prompt_tokens(tokenizer, messages)


def refuse_images(messages: list[dict[str, Any]], what: str = "a prompt") -> None:
    """The tinker backend renders chats to text tokens with the model's tokenizer, and has no
    image encoding of its own to put images among them (the SDK's ImageChunk takes bytes the
    model's renderer must place): an image is refused here, rather than silently dropped."""
    for turn, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") in ("image_url", "image") for b in content
        ):
            raise ConfigError(
                f"{what}: backend 'tinker' cannot take images (message {turn} holds one): "
                "its chat rendering is text only; train and evaluate rows with images on "
                "backend=local with a vision-language model, or score them with a hosted "
                "client (openai, claude, gemini)"
            )
