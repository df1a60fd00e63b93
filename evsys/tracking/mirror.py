"""The local mirror: every write, one JSON line, appended before anything else happens to it.

``<log_dir>/<segment>.writes.jsonl``  the writes of one client instance, in order
``<log_dir>/<segment>.sent``          the ids the service acknowledged, one a line, appended

A segment is ``<utc time>-<host>-<pid>-<short uuid>``: one per client instance, so a resumed
arm or a second machine adds a segment beside the others and never rewrites one. Lines reach the
operating system as they are written (a killed process keeps them); the sender fsyncs once per
batch, not per line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evsys.tracking.wire import encode_json

WRITES_SUFFIX = ".writes.jsonl"
SENT_SUFFIX = ".sent"


def encode_write(write: dict[str, Any]) -> str:
    """One mirror line, strict JSON. NaN and infinity stay, as ``"NaN"``, ``"Infinity"`` and
    ``"-Infinity"`` (``wire.NONFINITE``): turning a diverged loss into null would hide it."""
    return encode_json(write) + "\n"


def segment_name() -> str:
    """``<utc time>-<host>-<pid>-<short uuid>``, sortable by start time and safe as a file name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    host = re.sub(r"[^A-Za-z0-9_.]+", "_", socket.gethostname())[:40].strip("._") or "host"
    return f"{stamp}-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Mirror:
    """The append-only files of one segment. Thread-safe: training appends, the sender marks."""

    def __init__(self, log_dir: Path, segment: str | None = None):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.segment = segment or segment_name()
        self.writes_path = self.log_dir / f"{self.segment}{WRITES_SUFFIX}"
        self.sent_path = self.log_dir / f"{self.segment}{SENT_SUFFIX}"
        self._writes = None  # opened by the first write: a client that only reads leaves no file
        self._sent = None
        self._appended = self._marked = 0  # lines of this segment, and of them acknowledged
        self._closed = False
        self._lock = threading.Lock()

    def append(self, line: str) -> None:
        """Append one write, already encoded as a JSON line (``encode_write``)."""
        with self._lock:
            if self._writes is None:
                self._writes = self.writes_path.open("a", encoding="utf-8")
            self._writes.write(line)
            self._writes.flush()  # in the OS now: a killed process loses no line
            self._appended += 1

    def sync_to_disk(self) -> None:
        """fsync what was appended: called once per batch, before the batch is sent."""
        with self._lock:
            if self._writes is None or self._writes.closed:
                return
            fd = self._writes.fileno()  # its lines are flushed to it: append() flushes each
        # outside the lock: a slow disk must not hold up the training thread's next append
        with contextlib.suppress(OSError):  # closed meanwhile: close() fsyncs itself
            os.fsync(fd)

    def mark_sent(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        text = "".join(f"{write_id}\n" for write_id in ids)
        with self._lock:
            if self._closed:  # a request that outlived close(): `evsys sync` sends it again
                return
            if self._sent is None:
                self._sent = self.sent_path.open("a", encoding="utf-8")
            self._sent.write(text)
            self._sent.flush()
            self._marked += len(ids)

    @property
    def unsent(self) -> int:
        """How many writes of this segment the service has not acknowledged (yet)."""
        with self._lock:
            return self._appended - self._marked

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for handle in (self._writes, self._sent):
                if handle is not None and not handle.closed:
                    handle.flush()
                    os.fsync(handle.fileno())
                    handle.close()


class MirrorLineError(ValueError):
    """A mirror line that is not a write, named by file and line number (line 0: the file)."""

    def __init__(self, path: Path, line: int, message: str):
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


@dataclass
class Segment:
    """What one ``*.writes.jsonl`` file holds, read back."""

    path: Path
    writes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (line number, write)
    sent: set[str] = field(default_factory=set)
    truncated_line: int | None = None  # a last line without its newline: the writer was killed


def find_segments(directory: Path) -> list[Path]:
    """Every segment file under ``directory``, recursively (a sweep has one mirror per arm)."""
    return sorted(p for p in Path(directory).rglob(f"*{WRITES_SUFFIX}") if p.is_file())


def read_segment(path: Path) -> Segment:
    """The writes of one segment file. A last line cut short (no newline: the process died while
    writing it) is noted in ``truncated_line`` and left out; any other bad line raises
    ``MirrorLineError``, since skipping it would silently lose a write."""
    from evsys.tracking.wire import check_write

    segment = Segment(path=path)
    for number, line, complete in _lines(path):
        if complete and not line.strip():
            continue
        try:
            write = json.loads(line)
        except ValueError as exc:
            if not complete:
                segment.truncated_line = number
                break
            raise MirrorLineError(path, number, f"not JSON ({exc})") from None
        problem = check_write(write)
        if problem is not None:
            raise MirrorLineError(path, number, f"not a write: {problem}")
        segment.writes.append((number, write))
    sent_path = path.with_name(path.name.removesuffix(WRITES_SUFFIX) + SENT_SUFFIX)
    if sent_path.exists():
        text = _read_bytes(sent_path).decode("utf-8", errors="replace")
        segment.sent = {line.strip() for line in text.splitlines()}
    return segment


def _lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    lines = _read_bytes(path).split(b"\n")
    for number, raw in enumerate(lines, start=1):
        complete = number < len(lines)  # the piece after the last newline has none of its own
        if not raw and not complete:
            continue
        try:
            yield number, raw.decode("utf-8"), complete
        except UnicodeDecodeError as exc:
            if complete:
                raise MirrorLineError(path, number, f"not UTF-8 text ({exc.reason})") from None
            yield number, "", False  # cut inside a character: the same as any cut line


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MirrorLineError(path, 0, f"cannot read ({exc.strerror or exc})") from None
