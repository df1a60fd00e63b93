"""The retry layer: every inference call of an eval goes through ``call_with_retry``.

A call that fails is retried with exponential backoff and jitter; one that still fails after
``max_attempts`` raises :class:`RetriesExhausted`, which the eval loop records in a
:class:`RetryReport` against the row it belongs to, so one flaky row costs that row and is shown
in the summary, never silently dropped and never the whole eval.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from evsys.errors import BackendError
from evsys.interrupts import reraise_if_interruption

T = TypeVar("T")


class RetriesExhausted(BackendError):
    """A call that failed ``attempts`` times (or once, with an error not worth retrying)."""

    def __init__(self, attempts: int, error: BaseException, *, retryable: bool = True):
        self.attempts = attempts
        self.error = f"{type(error).__name__}: {error}"
        self.retryable = retryable
        why = f"after {attempts} attempt{'s' * (attempts != 1)}" if retryable else "not retryable"
        super().__init__(f"{self.error} ({why})")

    def __reduce__(self):
        return (_rebuild, (self.attempts, self.error, self.retryable))


def _rebuild(attempts: int, error: str, retryable: bool) -> RetriesExhausted:
    return RetriesExhausted(attempts, BackendError(error), retryable=retryable)


def backoff_delay(
    attempt: int,
    *,
    base: float,
    maximum: float,
    jitter: float = 0.1,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed ``attempt`` (1-based): ``base * 2**(attempt-1)``, capped at
    ``maximum``, plus up to ``jitter`` of itself at random so that parallel callers that failed
    together do not all retry at the same instant."""
    delay = min(base * 2 ** (attempt - 1), maximum)
    return delay * (1 + jitter * rng())


def call_with_retry(
    fn: Callable[[], T],
    *,
    max_attempts: int = 3,
    backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
    jitter: float = 0.1,
    retry_if: Callable[[BaseException], bool] = lambda exc: True,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """``fn()``, retried up to ``max_attempts`` times in all while ``retry_if(error)`` holds.

    Raises :class:`RetriesExhausted` (carrying the attempt count and the last error) when every
    attempt failed or an error is not retryable. An error with a ``retry_after`` attribute
    (seconds, e.g. from an HTTP ``Retry-After`` header) waits at least that long, within
    ``max_backoff_s``. ``on_retry(attempt, error, delay)`` is told before each wait.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    for attempt in range(1, max_attempts + 1):
        try:
            return fn()
        except RetriesExhausted:
            raise  # an inner layer already retried: retrying again would multiply the attempts
        except Exception as exc:
            reraise_if_interruption(exc)  # submitit's timeout is a RuntimeError: never retried
            if not retry_if(exc):
                raise RetriesExhausted(attempt, exc, retryable=False) from exc
            if attempt == max_attempts:
                raise RetriesExhausted(attempt, exc) from exc
            delay = backoff_delay(
                attempt, base=backoff_s, maximum=max_backoff_s, jitter=jitter, rng=rng
            )
            delay = max(delay, min(float(getattr(exc, "retry_after", 0) or 0), max_backoff_s))
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises


@dataclass(frozen=True)
class RetryFailure:
    """A call that never succeeded: which row (and sample), how often it was tried, the error."""

    index: int
    row_id: Any
    sample: int
    attempts: int
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RetryReport:
    """Retries and failures of one eval; thread-safe, since rows may be generated concurrently."""

    failures: list[RetryFailure] = field(default_factory=list)
    retries: int = 0
    """Attempts beyond the first, over all calls (succeeded or not)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_retry(self, *_: Any) -> None:
        with self._lock:
            self.retries += 1

    def record_failure(self, failure: RetryFailure) -> None:
        with self._lock:
            self.failures.append(failure)

    @property
    def total_failures(self) -> int:
        return len(self.failures)

    @property
    def failed_rows(self) -> list[int]:
        return sorted({f.index for f in self.failures})

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_failures": self.total_failures,
            "failed_rows": self.failed_rows,
            "retries": self.retries,
            "failures": [f.to_dict() for f in sorted(self.failures, key=_order)],
        }


def _order(failure: RetryFailure) -> tuple[int, int]:
    return failure.index, failure.sample
