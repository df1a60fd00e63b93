"""An episode as tokens, rendered with the model's own chat template, turn by turn.

The model is trained on exactly the tokens it sampled, so nothing is re-tokenised: the opening
messages are rendered once, each model turn appends its sampled tokens, and between two turns
come the tokens the template and the environment add (the end of the model's turn when it did
not sample it, the observation, the next assistant header). Those come from rendering the
conversation with and without them: the template must render a conversation's start the same
once more messages follow (every ChatML and Llama template does).
"""

from __future__ import annotations

from typing import Any

from evsys.agents.protocol import Message
from evsys.errors import BackendError


def opening_tokens(tokenizer: Any, messages: list[Message]) -> list[int]:
    """The opening messages, ending with the header of the model's first turn."""
    return _render(tokenizer, messages, add_generation_prompt=True)


def between_turns(
    tokenizer: Any,
    history: list[Message],
    action: str,
    action_tokens: list[int],
    observation: Message,
) -> list[int]:
    """What follows a model turn's sampled tokens up to the next assistant header: the rest of
    the turn as the template closes it, the observation, the header."""
    header = _render(tokenizer, history, add_generation_prompt=True)
    turn = [*history, {"role": "assistant", "content": action}]
    with_turn = _render(tokenizer, turn)
    following = _render(tokenizer, [*turn, observation], add_generation_prompt=True)
    _check_prefix(header, with_turn, tokenizer)
    _check_prefix(with_turn, following, tokenizer)
    rendered_turn = with_turn[len(header) :]
    if rendered_turn[: len(action_tokens)] == action_tokens:
        closing = rendered_turn[len(action_tokens) :]
    else:
        # The sampled tokens spell the text another way (cut mid-word, odd merges): close the
        # turn as the template closes an empty one, without repeating a sampled end token.
        empty = _render(tokenizer, [*history, {"role": "assistant", "content": ""}])
        closing = empty[len(header) :]
        if action_tokens and closing and action_tokens[-1] == closing[0]:
            closing = closing[1:]
    return closing + following[len(with_turn) :]


def _render(
    tokenizer: Any, messages: list[Message], add_generation_prompt: bool = False
) -> list[int]:
    if not messages:
        return []
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(out["input_ids"])


def _check_prefix(prefix: list[int], tokens: list[int], tokenizer: Any) -> None:
    if tokens[: len(prefix)] != prefix:
        raise BackendError(
            f"the chat template of {tokenizer.name_or_path!r} renders a conversation's start "
            "differently once more messages follow, so an episode's turns cannot be kept as "
            "the tokens the model saw; use a model whose template renders each message the "
            "same whatever follows it"
        )
