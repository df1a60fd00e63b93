"""Writing files so that a reader never sees half of one.

A sweep is read while it runs (``evsys results``, a resumed sweep on another machine, an agent
polling a cluster), so every file evsys writes for others goes to a temporary file in the same
directory first and is then renamed over the target: ``os.replace`` is atomic within a filesystem.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in one step; on failure the temporary file is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    # os.open with 0o666, not tempfile.mkstemp: mkstemp's 0o600 would survive the rename and hide
    # results from the other users of a shared cluster directory; this way the umask decides.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` in one step."""
    write_bytes_atomically(path, text.encode("utf-8"))


def write_json_atomically(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON with a trailing newline; unknown types become strings."""
    write_text_atomically(path, json.dumps(payload, indent=2, default=str) + "\n")


def write_jsonl_atomically(path: Path, rows: Iterable[Any]) -> None:
    """One JSON object per line; the directory is created when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))
