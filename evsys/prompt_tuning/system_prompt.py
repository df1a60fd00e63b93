"""The system prompt of rows, and the one a prompt-tuning run found.

A tuned prompt is the run's artifact ``best_prompt``: a text file in the run directory. Whatever
runs after the search (the run's eval and test benchmarks, the next ``combo`` phase) reads it
with :func:`best_prompt` and puts it into its rows with :func:`with_system_prompt`, so the
prompt a prediction was made with is the one ``predictions.jsonl`` shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from evsys.errors import DataError
from evsys.protocols import Row
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
