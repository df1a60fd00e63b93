"""The system prompt of rows, and the one a prompt-tuning run found.

A tuned prompt is the run's artifact ``best_prompt``: a text file in the run directory. Whatever
runs after the search (the run's eval and test benchmarks, the next ``combo`` phase) reads it
with :func:`best_prompt` and puts it into its rows with :func:`with_system_prompt`, so the
prompt a prediction was made with is the one ``predictions.jsonl`` shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evsys.errors import DataError
from evsys.protocols import InferenceClient, Row
from evsys.rows import Message, prompt_messages

BEST_PROMPT = "best_prompt"
"""The artifact name: ``artifacts["best_prompt"]`` is the path of the prompt's text file."""
BEST_PROMPT_FILE = "best_prompt.txt"


def set_system_prompt(messages: list[Message], prompt: str) -> list[Message]:
    """``messages`` with ``prompt`` as their system message: the first one replaced, else one
    put in front."""
    system = {"role": "system", "content": prompt}
    if messages and messages[0].get("role") == "system":
        return [system, *messages[1:]]
    return [system, *messages]


def with_system_prompt(rows: list[Row], prompt: str) -> list[Row]:
    """Copies of ``rows`` whose conversations open with ``prompt`` as the system message.

    A chat row keeps its turns (the assistant's too, for training); any other row gains
    ``messages``: the system message and its prompt as the user's turn. Its other keys stay, so
    its answer is scored as before.
    """
    out = []
    for row in rows:
        messages = row.get("messages") or prompt_messages(row)
        out.append({**row, "messages": set_system_prompt(list(messages), prompt)})
    return out


def system_prompt_of(messages: list[Message]) -> str | None:
    """The text of the first system message, if the conversation opens with one."""
    if messages and messages[0].get("role") == "system":
        content = messages[0].get("content")
        return content if isinstance(content, str) else None
    return None


def best_prompt(artifacts: Mapping[str, str]) -> str | None:
    """The prompt a prompt-tuning run (or phase) found; None when it tuned none."""
    path = artifacts.get(BEST_PROMPT)
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"artifact {BEST_PROMPT} '{path}' cannot be read: {exc}") from None


class SystemPromptClient:
    """``client``, with every conversation it is sent opening with ``prompt``: the model under a
    candidate prompt, for in-loop validation of a prompt search."""

    def __init__(self, client: InferenceClient, prompt: str):
        self.client, self.prompt = client, prompt
        if hasattr(client, "generate_batch"):  # keep the engine's batching
            self.generate_batch = self._generate_batch

    def generate(
        self,
        *,
        prompt: str | list[Message],
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None = None,
    ) -> str:
        return self.client.generate(
            prompt=self._with_prompt(prompt),
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
        )

    def _generate_batch(self, *, prompts: list[Any], **kwargs: Any) -> list[str]:
        return self.client.generate_batch(prompts=[self._with_prompt(p) for p in prompts], **kwargs)

    def _with_prompt(self, prompt: str | list[Message]) -> list[Message]:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return set_system_prompt(list(messages), self.prompt)
