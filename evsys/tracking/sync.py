"""Replay local mirrors to the service: what ``evsys sync [DIR ...]`` does.

Every write is sent again, or only those no ``.sent`` file acknowledges; the service applies a
write once by its id, so both are safe and syncing twice duplicates nothing. Writes from every
segment under every directory (the arms of a sweep, several machines, a resumed arm's later
segment) are merged in time order, so creations come before their updates and a resumed run's
steps land after its first segment's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evsys.tracking.errors import DashboardClientError, ServiceUnreachable
from evsys.tracking.mirror import Segment, encode_write, find_segments, read_segment
from evsys.tracking.transport import Transport
from evsys.tracking.wire import MAX_WRITES


class SyncInputError(ValueError):
    """A directory that is not there, or holds no mirror."""


@dataclass
class Pending:
    """One write to replay, and the segment line it came from."""

    segment: Segment
    line: int
    write: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.segment.path}:{self.line}"


@dataclass
class SyncReport:
    files: int = 0
    writes: int = 0  # complete writes found in the mirrors
    sent: int = 0
    applied: int = 0
    duplicates: int = 0  # already held by the service: sent before, or synced before
    skipped_sent: int = 0  # left out by --only-unsent
    truncated: list[str] = field(default_factory=list)  # "file:line" of lines cut by a kill
    refused: list[str] = field(default_factory=list)  # "file:line: why" the service refused
    unmarked: list[str] = field(default_factory=list)  # .sent files that could not be appended


def load_mirrors(directories: Sequence[Path]) -> list[Segment]:
    """Every segment under ``directories``; raises ``SyncInputError`` for a missing or empty
    directory and ``MirrorLineError`` (file:line) for a line that is not a write."""
    segments = []
    for directory in directories:
        if not directory.is_dir():
            raise SyncInputError(f"{directory}: no such directory")
        paths = find_segments(directory)
        if not paths:
            raise SyncInputError(f"{directory}: no mirror (*.writes.jsonl) under it")
        segments.extend(read_segment(path) for path in paths)
    return segments


def pending_writes(
    segments: Iterable[Segment], *, only_unsent: bool, report: SyncReport
) -> list[Pending]:
    """The writes to send, each once, in time order (ties keep their file order)."""
    pending: list[Pending] = []
    seen: set[str] = set()
    for segment in segments:
        report.files += 1
        report.writes += len(segment.writes)
        if segment.truncated_line is not None:
            report.truncated.append(f"{segment.path}:{segment.truncated_line}")
        for line, write in segment.writes:
            if write["id"] in seen:
                continue
            seen.add(write["id"])
            if only_unsent and write["id"] in segment.sent:
                report.skipped_sent += 1
                continue
            pending.append(Pending(segment, line, write))
    pending.sort(key=lambda p: p.write.get("time", 0.0))
    return pending


def send_all(
    transport: Transport,
    pending: list[Pending],
    report: SyncReport,
    *,
    advance: Callable[[int], None] = lambda n: None,
) -> SyncReport:
    """Send ``pending`` in batches. A batch the service refuses is halved until each refused
    write is alone (it is reported, the rest is sent). Raises ``ServiceUnreachable`` and
    ``EvsysAuthError`` as they come: what was acknowledged so far is marked sent."""
    for start in range(0, len(pending), MAX_WRITES):
        batch = pending[start : start + MAX_WRITES]
        _send(transport, batch, report)
        advance(len(batch))
    return report


def _send(transport: Transport, batch: list[Pending], report: SyncReport) -> None:
    lines = [encode_write(p.write) for p in batch]
    try:
        answer = transport.post_lines("/sdk/writes", lines)
    except DashboardClientError as exc:
        if isinstance(exc, ServiceUnreachable) or exc.status == 401:
            raise
        # a 4xx: the batch is one transaction, so halve it down to the refused writes
        if len(batch) == 1:
            report.refused.append(f"{batch[0].where}: {exc.detail}")
            return
        half = len(batch) // 2
        _send(transport, batch[:half], report)
        _send(transport, batch[half:], report)
        return
    report.sent += len(batch)
    report.applied += int((answer or {}).get("applied", 0))
    report.duplicates += int((answer or {}).get("duplicates", 0))
    _mark_sent(batch, report)


def _mark_sent(batch: list[Pending], report: SyncReport) -> None:
    by_segment: dict[Path, list[str]] = defaultdict(list)
    for p in batch:
        if p.write["id"] not in p.segment.sent:
            by_segment[p.segment.path].append(p.write["id"])
            p.segment.sent.add(p.write["id"])
    for path, ids in by_segment.items():
        sent_path = path.with_name(path.name.removesuffix(".writes.jsonl") + ".sent")
        try:
            with sent_path.open("a", encoding="utf-8") as f:
                f.write("".join(f"{write_id}\n" for write_id in ids))
        except OSError as exc:  # a read-only copy of a mirror syncs all the same
            if not any(u.startswith(f"{sent_path} (") for u in report.unmarked):
                report.unmarked.append(f"{sent_path} ({exc.strerror or exc})")
