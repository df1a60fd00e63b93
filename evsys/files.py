"""Writing files so that a reader never sees half of one.

A sweep is read while it runs (``evsys results``, a resumed sweep on another machine, an agent
polling a cluster), so every file evsys writes for others goes to a temporary file in the same
directory first and is then renamed over the target: ``os.replace`` is atomic within a filesystem.
A file appended to line by line (:func:`append_line`) loses a line it could not write whole.

A disk that is full (or over quota, read-only, failing) ends a write with :class:`StorageError`:
one sentence naming the file and the cause, and nothing half-written left behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# The causes of a failed write that lie with where the file lives, not with evsys or the input:
# each is said in words, with what the person can do about it.
STORAGE_CAUSES = {
    errno.ENOSPC: "no space left on the device; free some space and run again",
    errno.EDQUOT: "the disk quota is exceeded; free some space (or ask for more) and run again",
    errno.EFBIG: "the file would be larger than the file system allows",
    errno.EROFS: "the file system is read-only; give a directory on a writable one",
    errno.EIO: "an input/output error (a failing disk or network file system)",
}


class StorageError(OSError):
    """A file that could not be written because of its storage (see STORAGE_CAUSES)."""

    def __init__(self, path: str | Path, code: int):
        self.path, self.code = str(path), code
        cause = STORAGE_CAUSES.get(code, os.strerror(code))
        super().__init__(f"could not write {self.path}: {cause} ({errno.errorcode[code]})")
        self.errno = code

    def __reduce__(self):
        return (StorageError, (self.path, self.code))


def storage_failure(path: str | Path, exc: OSError) -> OSError:
    """``exc`` said as a StorageError naming ``path`` where its cause is the storage's; else
    ``exc`` itself (a missing directory, a permission: those keep their own type)."""
    if isinstance(exc, StorageError) or exc.errno not in STORAGE_CAUSES:
        return exc
    return StorageError(path, exc.errno)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def append_line(fd: int, path: str | Path, line: bytes) -> None:
    """Append ``line`` to the file open (``O_APPEND``) as ``fd``, whole or not at all: a line
    written in part is cut off again, so that a reader never sees half of it."""
    start = os.fstat(fd).st_size
    try:
        write_all(fd, line)
    except OSError as exc:
        # Cut off again (which frees the space the part took, too); where even that fails, a
        # reader skips the line cut short and the next append starts a new line.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise storage_failure(path, exc) from exc


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in one step; on failure the temporary file is removed and a
    storage failure (a full disk, …) is a :class:`StorageError` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # os.open with 0o666, not tempfile.mkstemp: mkstemp's 0o600 would survive the rename and
        # hide results from the other users of a shared cluster directory; the umask decides.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise storage_failure(path, exc) from exc
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
