"""The one JSONL parser: every reader of JSONL goes through it, so every broken line reports
``file:line`` the same way."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from evsys.errors import DataError

Row = dict[str, Any]


def iter_numbered_objects(lines: Iterable[str], source_name: str) -> Iterator[tuple[int, Row]]:
    """Yield ``(line_number, object)`` for each non-blank line; line numbers are 1-based."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{source_name}:{number}: invalid JSON ({exc.msg}: column {exc.colno})"
            ) from None
        if not isinstance(obj, dict):
            raise DataError(
                f"{source_name}:{number}: expected a JSON object per line, "
                f"found {type(obj).__name__} {_preview(line)}"
            )
        yield number, obj


def parse_jsonl(text: str, source_name: str) -> list[Row]:
    """The objects of a JSONL text; ``source_name`` is what error messages call it."""
    # split("\n"), not splitlines(): JSON strings may hold a raw U+2028, which splitlines breaks on.
    return [obj for _, obj in iter_numbered_objects(text.split("\n"), source_name)]


def read_jsonl_lines(path: str | Path) -> list[Row]:
    """The objects of a JSONL file; a missing file or a broken line is a :class:`DataError`."""
    with open_text(path) as handle:
        return [obj for _, obj in iter_numbered_objects(handle, str(path))]


def dumps_jsonl(rows: Sequence[Row]) -> str:
    """One compact JSON object per line, with a trailing newline."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def open_text(path: str | Path):
    """Open a UTF-8 text file, turning the OS errors a user can fix into :class:`DataError`."""
    try:
        return open(path, encoding="utf-8")
    except FileNotFoundError:
        raise missing_file_error(str(path)) from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None


def missing_file_error(path: str, hint: str = "") -> DataError:
    """The error every store raises for a path it does not hold."""
    message = f"{path}: no such file"
    return DataError(f"{message} ({hint})" if hint else message)


def _preview(line: str, width: int = 40) -> str:
    line = line.strip()
    return f"({line[:width]}…)" if len(line) > width else f"({line})"
