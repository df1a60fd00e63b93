"""Built-in row transforms (``data.transforms``): each is called as ``transform(rows) -> rows``
and returns new dicts, leaving the rows it was given untouched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from evsys.answers import answer_key
from evsys.config import Strict
from evsys.errors import DataError
from evsys.registry import register_transform

Row = dict[str, Any]


@register_transform("identity")
class Identity:
    """Returns (copies of) the rows unchanged; a placeholder where a transform is expected."""

    class Config(Strict):
        pass

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def __call__(self, rows: list[Row]) -> list[Row]:
        return [dict(row) for row in rows]


@register_transform("jsonl_to_chat")
class JsonlToChat:
    """Turns prompt/answer rows into chat rows for SFT.

    Each row keeps its keys and gains ``messages`` (an optional system turn, the user's prompt,
    the assistant's rendered answer) and ``target_assistant`` (the rendered answer). Rows that
    already have ``messages`` pass through unchanged; a harbor task without an answer (its own
    verifier scores it) gets the system and user turns only.
    """

    class Config(Strict):
        prompt_key: str = Field("prompt", description="Row key holding the user's message.")
        answer_key: str = Field("answer", description="Row key holding the expected answer.")
        system_prompt: str | None = Field(
            None, description="Prepended as a system message. None: no system message."
        )
        answer_template: str = Field(
            "<answer>{answer}</answer>",
            description=(
                "How the assistant turn renders the answer: `{answer}` is replaced by it, any "
                "other text (braces included) is kept literally."
            ),
        )

        @field_validator("answer_template")
        @classmethod
        def _has_answer_slot(cls, value: str) -> str:
            if "{answer}" not in value:
                raise ValueError(
                    f"answer_template {value!r} has no `{{answer}}` placeholder, so every "
                    "assistant turn would be the same text; add `{answer}` where the answer goes"
                )
            return value

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def __call__(self, rows: list[Row]) -> list[Row]:
        return [self._convert(index, row) for index, row in enumerate(rows)]

    def _convert(self, index: int, row: Row) -> Row:
        if "messages" in row:
            return dict(row)
        if self.cfg.answer_key not in row and isinstance(row.get("verifier"), Mapping):
            # A harbor task scored by its own verifier (sandbox, judge) has no answer to render:
            # it gets the prompt turns only, which is all RL and eval read.
            return {**row, "messages": self._prompt_turns(index, row)}
        answer = answer_key(row, self.cfg.answer_key)  # `tool_slug` rows: the reference's
        for key in (self.cfg.prompt_key, answer):
            if key not in row:
                raise DataError(
                    f"jsonl_to_chat: row {index} has no '{key}' key (it has: "
                    f"{', '.join(row) or 'no keys'}); set the transform's prompt_key/answer_key "
                    "params to the keys your rows use"
                )
        # replace, not str.format: a template may hold literal braces (JSON, code).
        rendered = self.cfg.answer_template.replace("{answer}", str(row[answer]))
        messages = [*self._prompt_turns(index, row), {"role": "assistant", "content": rendered}]
        return {**row, "messages": messages, "target_assistant": rendered}

    def _prompt_turns(self, index: int, row: Row) -> list[Row]:
        if self.cfg.prompt_key not in row:
            raise DataError(
                f"jsonl_to_chat: row {index} has no '{self.cfg.prompt_key}' key (it has: "
                f"{', '.join(row) or 'no keys'}); set the transform's prompt_key param to the key "
                "your rows use"
            )
        system = self.cfg.system_prompt
        messages = [] if system is None else [{"role": "system", "content": system}]
        return [*messages, {"role": "user", "content": row[self.cfg.prompt_key]}]
