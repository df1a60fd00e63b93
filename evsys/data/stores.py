"""Data stores: where rows are read from and written to (the ``data_store`` block)."""

from __future__ import annotations

import copy
import json
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from evsys.config import Strict
from evsys.data.jsonl import dumps_jsonl, missing_file_error, open_text, read_jsonl_lines
from evsys.errors import DataError
from evsys.files import write_text_atomically
from evsys.registry import register_data_store

Row = dict[str, Any]


@register_data_store("local")
class LocalDataStore:
    """Files in a directory on disk. Writes are atomic: readers never see half a file."""

    class Config(Strict):
        root: str | None = Field(
            None,
            description=(
                "Directory that relative paths resolve against (absolute paths are used as "
                "given). None: the working directory when the store is built; a relative root "
                "is also taken from there."
            ),
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)
        # Fixed at build time, so a later chdir does not move where the rows are read from.
        self.root = Path(self.cfg.root or ".").expanduser().absolute()

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """The file ``path`` names: absolute as given, relative against the store root."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.root / candidate

    def read_jsonl(self, path: str) -> list[Row]:
        return read_jsonl_lines(self.resolve(path))

    def write_jsonl(self, path: str, rows: Sequence[Row]) -> None:
        self._write_text(path, dumps_jsonl(rows))

    def read_json(self, path: str) -> Any:
        resolved = self.resolve(path)
        with open_text(resolved) as handle:
            text = handle.read()
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{resolved}:{exc.lineno}: invalid JSON ({exc.msg}: column {exc.colno})"
            ) from None

    def write_json(self, path: str, obj: Any) -> None:
        self._write_text(path, _dumps_json(path, obj))

    def exists(self, path: str) -> bool:
        return self.resolve(path).exists()

    def list(self, prefix: str = "") -> list[str]:
        """Files whose path starts with ``prefix``, spelt like it (relative or absolute).

        ``list("runs/")`` lists everything under ``runs``; ``list("runs/a")`` also matches
        ``runs/a1.jsonl``. An empty prefix walks the whole root.
        """
        start = self.resolve(prefix) if prefix else self.root
        directory = start if not prefix or prefix.endswith("/") else start.parent
        if not directory.is_dir():
            return []
        absolute = Path(prefix).is_absolute()
        wanted = posixpath.normpath(prefix) if prefix else ""
        names = (
            file.as_posix() if absolute else Path(os.path.relpath(file, self.root)).as_posix()
            for file in directory.rglob("*")
            if file.is_file()
        )
        return sorted(name for name in names if name.startswith(wanted))

    def _write_text(self, path: str, text: str) -> None:
        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(target, text)


@register_data_store("in_memory")
class InMemoryDataStore:
    """A dict of path → content, for tests and for rows built in Python."""

    class Config(Strict):
        files: dict[str, Any] = Field(
            default_factory=dict,
            description=(
                "Initial content: a .jsonl path maps to a list of row objects, any other path "
                "to the JSON value read_json returns."
            ),
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)
        # Copies in and out: a caller editing the rows it read must not change the store.
        self.files: dict[str, Any] = {
            _key(path): copy.deepcopy(content) for path, content in self.cfg.files.items()
        }

    def read_jsonl(self, path: str) -> list[Row]:
        rows = self._get(path)
        if not isinstance(rows, list):
            raise DataError(f"{path}: holds {type(rows).__name__}, expected a list of rows")
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}:{number}: expected a JSON object per line, found {type(row).__name__}"
                )
        return copy.deepcopy(rows)

    def write_jsonl(self, path: str, rows: Sequence[Row]) -> None:
        self.files[_key(path)] = copy.deepcopy(list(rows))

    def read_json(self, path: str) -> Any:
        return copy.deepcopy(self._get(path))

    def write_json(self, path: str, obj: Any) -> None:
        _dumps_json(path, obj)  # refuse what a local store could not write either
        self.files[_key(path)] = copy.deepcopy(obj)

    def exists(self, path: str) -> bool:
        return _key(path) in self.files

    def list(self, prefix: str = "") -> list[str]:
        wanted = prefix.removeprefix("./")
        return sorted(path for path in self.files if path.startswith(wanted))

    def _get(self, path: str) -> Any:
        try:
            return self.files[_key(path)]
        except KeyError:
            held = ", ".join(sorted(self.files)) or "nothing"
            raise missing_file_error(path, f"the in_memory store holds: {held}") from None


def _key(path: str) -> str:
    # "./a.jsonl" and "a.jsonl" name the same file.
    return posixpath.normpath(str(path))


def _dumps_json(path: str, obj: Any) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, indent=2) + "\n"
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: cannot be written as JSON ({exc})") from None
