"""The background sender: batches mirrored writes to ``POST /sdk/writes`` on a daemon thread.

Training only puts writes on a queue. This thread takes what has gathered (at most one batch
every ``interval`` seconds, at most ``MAX_WRITES`` a batch), fsyncs the mirror, sends,
and appends the acknowledged ids to the mirror's ``.sent`` file. No answer (connection error,
timeout, 5xx): warn once, back off, retry the same batch. A write refused with a 4xx: kept for
``flush``/``close`` to raise, never raised here. A key rejected mid-run: warn, stop sending,
keep mirroring (``evsys sync`` sends the rest later).

``close`` waits for a service that answers, not for a dead one: in an outage (a request got no
answer: refused, timed out, 5xx; a service that hangs from the start fails the key check's
short timeout) it gives the retry it wakes half a second, then leaves what is unsent to the
mirror, for ``evsys sync``. ``flush`` waits its timeout.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

from evsys.tracking.errors import DashboardClientError, EvsysAuthError, ServiceUnreachable
from evsys.tracking.mirror import Mirror
from evsys.tracking.transport import Transport
from evsys.tracking.wire import MAX_WRITES

log = logging.getLogger("evsys.tracking")


class _Marker:
    """Put on the queue by ``flush``: set once every write queued before it was dealt with."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.all_sent = False


_STOP = object()
DEAD_AFTER_S = 0.5  # in an outage, a close waits this long for the retry it wakes


class Sender:
    def __init__(
        self,
        transport: Transport,
        mirror: Mirror,
        *,
        interval: float = 0.25,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        service_down: bool = False,
    ):
        self.transport, self.mirror = transport, mirror
        self.interval, self.retry_initial, self.retry_max = interval, retry_initial, retry_max
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()  # flush and close cut a wait short
        self._abandon = False  # close gave up waiting: stop retrying, the mirror has it all
        self._revoked = False
        # set while the service does not answer (from the start when the key check got none),
        # so that an outage is warned about once
        self._unreachable_since: float | None = time.monotonic() if service_down else None
        self._given_up = 0  # writes not sent for good (key rejected, write refused, abandoned)
        self._refused: list[DashboardClientError] = []
        self._refused_lock = threading.Lock()
        self._last_send = 0.0
        self._thread = threading.Thread(
            target=self._run, name="evsys-dashboard-sender", daemon=True
        )
        self._thread.start()

    def submit(self, write_id: str, line: str) -> None:
        """Queue one mirrored write: its id and its JSON line (sent as it is, not re-encoded)."""
        self._queue.put((write_id, line))

    def flush(self, timeout: float) -> bool:
        """Wait until every write submitted so far was sent or given up; ``True`` when all were
        acknowledged (and none ever given up), ``False`` on a timeout too."""
        return self.wait_flushed(self.start_flush(), timeout)

    def start_flush(self) -> _Marker:
        """Send what is queued now, without waiting; ``wait_flushed`` waits for it. Several
        senders flushed at once share one wait (the exit hook's)."""
        marker = _Marker()
        self._queue.put(marker)
        self._wake.set()
        return marker

    def wait_flushed(self, marker: _Marker, timeout: float, *, unless_dead: bool = False) -> bool:
        """Wait up to ``timeout`` for ``marker``; ``unless_dead``: less, once the service looks
        dead (see :meth:`_looks_dead`)."""
        if not unless_dead:
            return marker.done.wait(timeout) and marker.all_sent
        began = time.monotonic()
        deadline = began + timeout
        while not marker.done.wait(min(0.02, max(0.0, deadline - time.monotonic()))):
            now = time.monotonic()
            if now >= deadline or self._looks_dead(began, now):
                return False
        return marker.all_sent

    def _looks_dead(self, waiting_since: float, now: float) -> bool:
        """Whether the service is in an outage (a request got no answer: refused, timed out,
        5xx) that the wait's own retry, which a flush wakes at once, did not end. A request
        merely slow is no sign: a busy service is slow, and a hanging one times out."""
        outage = self._unreachable_since
        return outage is not None and now - max(outage, waiting_since) >= DEAD_AFTER_S

    def close(self, timeout: float) -> bool:
        all_sent = self.wait_flushed(self.start_flush(), timeout, unless_dead=True)
        self._abandon = True  # a batch still retrying stays in the mirror for `evsys sync`
        self._queue.put(_STOP)
        self._wake.set()
        # A thread stuck in a request to a hanging service is a daemon: it is left to time out.
        self._thread.join(timeout=0.05)
        return all_sent

    def take_refused(self) -> list[DashboardClientError]:
        with self._refused_lock:
            refused, self._refused = self._refused, []
        return refused

    # ---- the thread ----
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            self._pace(first)
            items = [first]
            while len(items) < MAX_WRITES:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            batch: list[tuple[str, str]] = []
            for item in items:
                if isinstance(item, tuple):
                    batch.append(item)
                    continue
                self._send(batch)  # the writes queued before a flush or close go first
                batch = []
                if item is _STOP:
                    return
                item.all_sent = self._given_up == 0
                item.done.set()
            self._send(batch)

    def _pace(self, first: Any) -> None:
        """Let writes gather for up to ``interval`` since the last send, unless flushed."""
        if isinstance(first, tuple):
            wait = self._last_send + self.interval - time.monotonic()
            if wait > 0:
                self._wake.wait(wait)
        self._wake.clear()

    def _send(self, batch: list[tuple[str, str]]) -> None:
        if not batch:
            return
        if self._revoked or self._abandon:
            self._given_up += len(batch)
            return
        self.mirror.sync_to_disk()
        delay = self.retry_initial
        while True:
            try:
                self.transport.post_lines("/sdk/writes", [line for _, line in batch])
            except EvsysAuthError as exc:
                if exc.status != 401:  # 403: a write naming what this key may not touch
                    self._refuse(batch, exc)
                    return
                log.warning(
                    "dashboard: the service rejected the API key (%s); this run goes on writing "
                    "to its local mirror %s only: `evsys sync` it once the key works",
                    exc.detail,
                    self.mirror.log_dir,
                )
                self._revoked = True
                self._given_up += len(batch)
                return
            except ServiceUnreachable as exc:
                if self._unreachable_since is None:
                    self._unreachable_since = time.monotonic()
                    log.warning(
                        "dashboard: %s; writes go on to the local mirror %s and are retried",
                        exc.detail,
                        self.mirror.log_dir,
                    )
                if self._abandon or self._wait(delay):
                    self._given_up += len(batch)
                    return
                delay = min(delay * 2, self.retry_max)
                continue
            except DashboardClientError as exc:
                self._refuse(batch, exc)
                return
            break
        if self._unreachable_since is not None:
            log.warning("dashboard: reachable again; sending what the mirror gathered")
            self._unreachable_since = None
        self._last_send = time.monotonic()
        self.mirror.mark_sent(write_id for write_id, _ in batch)

    def _wait(self, delay: float) -> bool:
        """Back off ``delay`` seconds (a flush cuts it short); ``True`` when close abandoned."""
        self._wake.wait(delay)
        self._wake.clear()
        return self._abandon

    def _refuse(self, batch: list[tuple[str, str]], exc: DashboardClientError) -> None:
        """A batch is one transaction: halve it until the refused writes are alone, send the rest."""
        if len(batch) > 1:
            half = len(batch) // 2
            self._send(batch[:half])
            self._send(batch[half:])
            return
        write_id, line = batch[0]
        op = json.loads(line).get("op")
        log.error("dashboard: the service refused write %s (%s): %s", write_id, op, exc)
        self._given_up += 1
        with self._refused_lock:
            self._refused.append(
                DashboardClientError(f"write {write_id} ({op}): {exc.detail}", exc.status)
            )
