"""``AnswerJournal``: every completion an eval paid for, on disk the moment it arrives.

``generations.jsonl`` in the output directory is append-only: a first line saying which model
answered (``{"eval": {...}}``), then one line per completion, flushed as it is written, before
anything is scored::

    {"index": 3, "id": "q3", "sample": 0, "prompt_sha256": "…", "completion": "<answer>7</answer>"}

A sample the model refused is saved the same way, with ``"refused": <why>`` beside an empty
completion: it was paid for too, and is read back as a refusal, not asked again.

A judge that fails, an interrupted eval or a crash leaves these answers behind; the next eval
into the same directory reads them back and asks the model only for what is missing. A line is
reused only when its row's prompt still hashes the same (the dataset may have changed); lines
that cannot be read (a line cut short by a crash) are skipped. The file is data read back from
disk: it only ever fills answer slots, never chooses a path or a setting. A line the disk has no
room for is cut off again and the eval stops with a :class:`~evsys.files.StorageError` naming the
file; the lines before it stay readable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evsys.errors import ConfigError, Problem
from evsys.files import append_line, storage_failure
from evsys.harness.config import ModelEvalConfig
from evsys.harness.retry import RefusedAnswer

log = logging.getLogger(__name__)

GENERATIONS = "generations.jsonl"
HEADER_KEY = "eval"
# What decides a completion, besides the prompt (hashed per line): the same prompt sent to
# another model or with other sampling settings answers differently, so such answers are not
# reused. No client params beyond the endpoint: they may name credentials.
FINGERPRINT_FIELDS = ("inference_kind", "model_name", "checkpoint", "max_tokens", "temperature")


def fingerprint(config: ModelEvalConfig) -> dict[str, Any]:
    """What the answers in a journal were generated with (see FINGERPRINT_FIELDS)."""
    out = {name: getattr(config, name) for name in FINGERPRINT_FIELDS}
    out["base_url"] = config.client_params.get("base_url")
    return out


def prompt_hash(prompt: Any) -> str:
    text = json.dumps(prompt, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class AnswerJournal:
    """The answers of one eval's output directory: those read back, and each new one appended
    (thread-safe: completions arrive from several requests at once)."""

    def __init__(self, path: Path, header: dict[str, Any], hashes: Sequence[str]):
        self.path, self.header, self.hashes = path, header, list(hashes)
        self._fd: int | None = None  # unbuffered: a line is on disk (or cut off) when written
        self._lock = threading.Lock()
        self.written = 0

    @classmethod
    def for_eval(cls, out: Path, config: ModelEvalConfig, prompts: Sequence[Any]) -> AnswerJournal:
        """The journal of ``out``; a ConfigError (nothing written) when it holds another model's
        answers, or when ``config.resume`` asks for answers and there are none."""
        journal = cls(out / GENERATIONS, fingerprint(config), [prompt_hash(p) for p in prompts])
        found = journal._stored_header()
        if found is None and journal.path.exists() and journal.path.stat().st_size:
            raise ConfigError(
                Problem(
                    "--output-dir",
                    f"{journal.path} is not a file of saved answers (its first line names no "
                    "eval); give a new --output-dir",
                    value=str(out),
                )
            )
        if found is None and config.resume:
            raise ConfigError(
                Problem(
                    "--resume",
                    f"there are no saved answers to resume from ({journal.path} does not exist "
                    "or is empty)",
                    value=str(out),
                )
            )
        differs = [
            k for k in journal.header if found is not None and found.get(k) != journal.header[k]
        ]
        if found is not None and differs:
            raise ConfigError(
                Problem(
                    "--output-dir",
                    f"{journal.path} holds answers of another eval (generated with "
                    f"{', '.join(f'{k}={found.get(k)!r}' for k in differs)}); give a new "
                    "--output-dir, or the settings those answers were generated with",
                    value=str(out),
                )
            )
        return journal

    def read(self, num_samples: int) -> list[list[str | None]]:
        """The saved completion of each row and sample (None where there is none to reuse; a
        :class:`RefusedAnswer` where the model refused it)."""
        answers: list[list[str | None]] = [[None] * num_samples for _ in self.hashes]
        if not self.path.exists():
            return answers
        skipped = 0
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                entry = _entry(line)
                if number == 1 and isinstance(entry, dict) and HEADER_KEY in entry:
                    continue
                slot = self._slot(entry, num_samples)
                if slot is None:
                    skipped += bool(line.strip())
                    continue
                index, sample, completion = slot
                answers[index][sample] = completion
        if skipped:
            log.info("%s: %d lines not reused (other prompts, or unreadable)", self.path, skipped)
        return answers

    def append(
        self, index: int, row_id: Any, sample: int, completion: str, refused: str | None = None
    ) -> None:
        """One completion (or, with ``refused``, why the model declined it), on disk (flushed)
        before this returns."""
        line = {
            "index": index,
            "id": row_id,
            "sample": sample,
            "prompt_sha256": self.hashes[index],
            "completion": completion,
            **({"refused": refused} if refused is not None else {}),
        }
        # ASCII escapes: any text an API returned (a lone surrogate included) reads back as is.
        text = json.dumps(line, default=str) + "\n"
        with self._lock:
            append_line(self._open(), self.path, text.encode("utf-8"))
            self.written += 1

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AnswerJournal:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # -- parts --------------------------------------------------------------------------------

    def _open(self) -> int:
        if self._fd is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            except OSError as exc:
                raise storage_failure(self.path, exc) from exc
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    # a line cut short by a crash stays unreadable on its own line
                    append_line(fd, self.path, b"\n")
                if not size:
                    header = json.dumps({HEADER_KEY: self.header}, default=str) + "\n"
                    append_line(fd, self.path, header.encode("utf-8"))
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def _stored_header(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            entry = _entry(handle.readline())
        if isinstance(entry, dict) and isinstance(entry.get(HEADER_KEY), dict):
            return entry[HEADER_KEY]
        return None

    def _slot(self, entry: Any, num_samples: int) -> tuple[int, int, str] | None:
        """(row, sample, completion) of a line that fits this eval's rows; the completion a
        RefusedAnswer where the line says the model refused."""
        if not isinstance(entry, dict):
            return None
        index, sample, completion = entry.get("index"), entry.get("sample"), entry.get("completion")
        if not (_is_int(index) and _is_int(sample) and isinstance(completion, str)):
            return None
        if not (0 <= index < len(self.hashes) and 0 <= sample < num_samples):
            return None
        if entry.get("prompt_sha256") != self.hashes[index]:
            return None
        refused = entry.get("refused")
        if isinstance(refused, str):
            return index, sample, RefusedAnswer(refused)
        return index, sample, completion


def _entry(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
