"""``generate_samples``: the completions of an eval, each through the retry layer.

Every completion is handed to ``on_answer`` the moment it arrives (the eval saves it to disk
there, before anything is scored), and slots already filled (answers read back from an earlier,
interrupted eval) are not asked for again. A call that exhausts its retries costs its row; with
``give_up_after``, that many such calls in a row mean the model is down: the calls left are not
made, and :class:`ModelDown` says so. A sample the model refuses (:class:`Refused`) is recorded
in the report apart and left None; the call was answered, so it breaks a streak of failures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from evsys.errors import BackendError
from evsys.harness.config import ModelEvalConfig
from evsys.harness.retry import (
    Refused,
    RetriesExhausted,
    RetryFailure,
    RetryReport,
    call_with_retry,
)
from evsys.protocols import InferenceClient
from evsys.training import progress_bar

Row = dict[str, Any]
Samples = list[list[str | None]]
OnAnswer = Callable[[int, int, str], None]
"""``(row index, sample, completion)``: told of each completion as it arrives."""


class ModelDown(BackendError):
    """``give_up_after`` calls in a row failed after all their attempts: the rest were not made."""

    def __init__(self, failures: int, error: str):
        self.failures, self.error = failures, error
        super().__init__(
            f"the model looks down: {failures} calls in a row failed after all their attempts "
            f"(the last: {error}); the calls left were not made"
        )


class _FailureStreak:
    """Calls that failed in a row (thread-safe); ``tripped`` once there were ``limit``."""

    def __init__(self, limit: int | None):
        self.limit, self.count, self.last, self.tripped = limit, 0, "", False
        self._lock = threading.Lock()

    def failed(self, error: str) -> None:
        with self._lock:
            self.count, self.last = self.count + 1, error
            self.tripped = self.tripped or (self.limit is not None and self.count >= self.limit)

    def succeeded(self) -> None:
        with self._lock:
            self.count = 0 if not self.tripped else self.count


def generate_samples(
    client: InferenceClient,
    prompts: Sequence[Any],
    rows: Sequence[Row],
    config: ModelEvalConfig,
    report: RetryReport,
    *,
    sleep: Callable[[float], None] = time.sleep,
    done: Samples | None = None,
    on_answer: OnAnswer = lambda index, sample, text: None,
    give_up_after: int | None = None,
) -> Samples:
    """``num_samples`` completions per prompt; None where a call exhausted its retries or the
    model refused (each recorded in ``report``).
    ``done``: completions already in hand (None where missing); only the missing are asked.
    ``give_up_after``: raise :class:`ModelDown` after that many failed calls in a row."""
    out: Samples = (
        [list(row) for row in done]
        if done is not None
        else [[None] * config.num_samples for _ in prompts]
    )
    jobs = [
        (i, s) for i in range(len(prompts)) for s in range(config.num_samples) if out[i][s] is None
    ]

    def retried(fn: Callable[[], Any]) -> Any:
        return call_with_retry(
            fn,
            max_attempts=config.max_attempts,
            backoff_s=config.backoff_s,
            max_backoff_s=config.max_backoff_s,
            on_retry=report.record_retry,
            sleep=sleep,
        )

    streak = _FailureStreak(give_up_after)

    def answered(index: int, sample: int, text: Any) -> None:
        out[index][sample] = text
        streak.succeeded()
        if isinstance(text, str):
            on_answer(index, sample, text)

    def refused(index: int, slots: list[int], exc: Refused) -> None:
        """A call the model declined some samples of: those stay None, the rest are answers."""
        for position, text in enumerate(exc.completions):
            if position not in exc.reasons:
                answered(index, slots[position], text)
        streak.succeeded()
        for position, reason in exc.reasons.items():
            report.record_refusal(index, rows[index].get("id"), slots[position], reason)

    def failed(jobs: list[tuple[int, int]], exc: RetriesExhausted) -> None:
        """One call that failed, for every completion it was to give."""
        streak.failed(exc.error)
        for index, sample in jobs:
            report.record_failure(
                RetryFailure(index, rows[index].get("id"), sample, exc.attempts, exc.error)
            )

    batch = getattr(client, "generate_batch", None)
    sample = getattr(client, "sample", None)
    with progress_bar(f"eval {config.model_label}", len(jobs)) as advance:
        if batch is not None:  # batching engines: one call per chunk of rows
            size = config.batch_size
            for chunk in [jobs[i : i + size] for i in range(0, len(jobs), size)]:
                if streak.tripped:
                    break
                try:
                    texts = retried(
                        lambda chunk=chunk: batch(
                            prompts=[prompts[i] for i, _ in chunk],
                            max_tokens=config.max_tokens,
                            temperature=config.temperature,
                        )
                    )
                except RetriesExhausted as exc:
                    failed(chunk, exc)
                else:
                    for (i, s), text in zip(chunk, texts, strict=True):
                        answered(i, s, text)
                advance(len(chunk), failures=report.total_failures)
            return _unless_down(out, streak)

        if sample is not None and config.num_samples > 1:
            # Hosted APIs sample a row's missing completions in one request where they can.
            missing: dict[int, list[int]] = {}
            for i, s in jobs:
                missing.setdefault(i, []).append(s)

            def row(index: int) -> None:
                slots = missing[index]
                if streak.tripped:
                    return
                try:
                    texts = retried(
                        lambda: sample(
                            prompt=prompts[index],
                            n=len(slots),
                            max_tokens=config.max_tokens,
                            temperature=config.temperature,
                        )
                    )
                except Refused as exc:
                    refused(index, slots, exc)
                except RetriesExhausted as exc:
                    failed([(index, s) for s in slots], exc)
                else:
                    for s, text in zip(slots, texts, strict=True):
                        answered(index, s, text)

            _in_pool(
                config.batch_size, row, list(missing), lambda i: len(missing[i]), advance, report
            )
            return _unless_down(out, streak)

        def one(job: tuple[int, int]) -> None:
            index, s = job
            if streak.tripped:
                return
            try:
                text = retried(
                    lambda: client.generate(
                        prompt=prompts[index],
                        max_tokens=config.max_tokens,
                        temperature=config.temperature,
                    )
                )
            except Refused as exc:
                refused(index, [s], exc)
            except RetriesExhausted as exc:
                failed([job], exc)
            else:
                answered(index, s, text)

        # Per-call clients (APIs): batch_size requests in flight at once.
        _in_pool(config.batch_size, one, jobs, lambda job: 1, advance, report)
    return _unless_down(out, streak)


def _unless_down(out: Samples, streak: _FailureStreak) -> Samples:
    if streak.tripped:
        raise ModelDown(streak.count, streak.last)
    return out


def _in_pool(
    workers: int,
    work: Callable[[Any], None],
    items: list[Any],
    size: Callable[[Any], int],
    advance: Callable[..., None],
    report: RetryReport,
) -> None:
    """``work(item)`` for every item, ``workers`` at once; an interruption (a signal) or an
    error drops the queued items instead of running them."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(work, item): item for item in items}
        try:
            for future in as_completed(futures):
                future.result()
                advance(size(futures[future]), failures=report.total_failures)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
