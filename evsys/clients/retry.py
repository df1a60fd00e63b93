"""The retry layer: every inference call of an eval goes through ``call_with_retry``.

A call that fails is retried with exponential backoff and jitter; one that still fails after
``max_attempts`` raises :class:`RetriesExhausted`, which the eval loop records in a
:class:`RetryReport` against the row it belongs to, so one flaky row costs that row and is shown
in the summary, never silently dropped and never the whole eval.

The one policy of what is worth another try (:func:`worth_retrying`), shared by every inference
client: a :class:`TransientError` (rate limits, overload, 5xx, dropped connections) and a
:class:`MalformedResponse` (a body that is not the API's answer), nothing else. A model that
declines to answer raises :class:`Refused`: an outcome of its own, never retried.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from evsys.errors import BackendError
from evsys.interrupts import reraise_if_interruption

T = TypeVar("T")


class TransientError(BackendError):
    """A failure that may go away when the request is sent again; ``retry_after``: seconds the
    server asked to wait."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class MalformedResponse(TransientError):
    """A body that is not what the API answers (not JSON, truncated, its choices, candidates or
    content missing): retried like any transient failure, since a proxy or a server under load
    cuts bodies short. A refusal or a safety block is never one (:class:`Refused`)."""


TRANSIENT_STATUS = frozenset({408, 425, 429})
"""HTTP statuses worth another try, besides every 5xx (529: Anthropic is overloaded).

Not 409 Conflict, though the openai and anthropic SDKs retry it by default (a "lock timeout" of
their stateful endpoints; their retries are off here, ``max_retries=0``): to an inference call a
409 says the request conflicts with the state of something (a model being replaced, an
idempotency key used for another request), which the same request sent again conflicts with
again. Gemini's SDK does not retry 409 either (its default retry statuses: 408, 429, 5xx); an
OpenAI-compatible server's 409 is read the same way. One clear error instead, at once."""


def transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUS or status >= 500


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (an HTTP date is left to backoff)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return float(lowered[name]) * scale
        except (KeyError, ValueError, TypeError):
            continue
    return None


def worth_retrying(error: BaseException) -> bool:
    """The shared retry policy of the inference clients: transient failures and malformed
    bodies are tried again; client errors, bugs and refusals are not."""
    return isinstance(error, TransientError)


class RetriesExhausted(BackendError):
    """A call that failed ``attempts`` times (or once, with an error not worth retrying): the
    call went unanswered. Its subclass :class:`Refused` is a call the model declined."""

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


class Refused(RetriesExhausted):
    """The model declined: a refusal, a content filter, a safety block (of the prompt or of the
    answer). Its own outcome, neither an answer nor an error: the call was answered and metered,
    and asking again would get the same verdict at the same price, so it is never retried.

    ``reasons``: sample → why (the vendor's finish or stop reason, or its refusal message);
    ``completions``: the call's samples, None where refused (a request of ``n`` samples may
    refuse some). A RetriesExhausted, so every caller that copes with a call left unanswered
    copes with it too, and :func:`call_with_retry` passes it on without another try; the eval
    counts it apart (:class:`RetryReport`)."""

    def __init__(self, reasons: dict[int, str], completions: list[str | None] | None = None):
        self.reasons = dict(sorted(reasons.items()))
        self.completions = list(completions) if completions is not None else [None]
        self.attempts, self.retryable = 1, False
        self.error = "Refused: " + "; ".join(dict.fromkeys(self.reasons.values()))
        BackendError.__init__(self, self.error)

    def __reduce__(self):
        return (Refused, (self.reasons, self.completions))


class RefusedAnswer(str):
    """The answer that stands for a refused sample where a caller needs one text per prompt (a
    run's eval, a benchmark): empty, so every metric scores it as no answer, and carrying
    ``reason`` so that the predictions record why."""

    reason: str

    def __new__(cls, reason: str) -> RefusedAnswer:
        answer = super().__new__(cls, "")
        answer.reason = reason
        return answer


def answer_or_refusal(generate: Callable[[], str]) -> str:
    """``generate()``'s answer; a refusal becomes a :class:`RefusedAnswer` instead of ending the
    caller's whole batch (the refusal was metered where it was answered)."""
    try:
        return generate()
    except Refused as exc:
        return RefusedAnswer(exc.error)


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


@dataclass(frozen=True)
class Refusal:
    """A sample the model declined to give (:class:`Refused`): which row, and why."""

    index: int
    row_id: Any
    sample: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RetryReport:
    """Retries, failures and refusals of one eval; thread-safe, since rows may be generated
    concurrently. A sample is answered, refused or failed: never two of them."""

    failures: list[RetryFailure] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    retries: int = 0
    """Attempts beyond the first, over all calls (succeeded or not)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_retry(self, *_: Any) -> None:
        with self._lock:
            self.retries += 1

    def record_failure(self, failure: RetryFailure) -> None:
        with self._lock:
            self.failures.append(failure)

    def record_refusal(self, index: int, row_id: Any, sample: int, reason: str) -> None:
        with self._lock:
            self.refusals.append(Refusal(index, row_id, sample, reason))

    @property
    def total_refused(self) -> int:
        return len(self.refusals)

    @property
    def refused_rows(self) -> list[int]:
        return sorted({r.index for r in self.refusals})

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
            "total_refused": self.total_refused,
            "refused_rows": self.refused_rows,
            "refusals": [r.to_dict() for r in sorted(self.refusals, key=_order)],
        }


def _order(outcome: RetryFailure | Refusal) -> tuple[int, int]:
    return outcome.index, outcome.sample
