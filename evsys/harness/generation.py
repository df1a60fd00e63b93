"""``generate_samples``: the completions of an eval, each through the retry layer.

Every completion is handed to ``on_answer`` the moment it arrives (the eval saves it to disk
there, before anything is scored), and slots already filled (answers read back from an earlier,
interrupted eval) are not asked for again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from evsys.harness.config import ModelEvalConfig
from evsys.harness.retry import RetriesExhausted, RetryFailure, RetryReport, call_with_retry
from evsys.protocols import InferenceClient
from evsys.training import progress_bar

Row = dict[str, Any]
Samples = list[list[str | None]]
OnAnswer = Callable[[int, int, str], None]
"""``(row index, sample, completion)``: told of each completion as it arrives."""


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
) -> Samples:
    """``num_samples`` completions per prompt; None where a call exhausted its retries.
    ``done``: completions already in hand (None where missing); only the missing are asked."""
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

    def answered(index: int, sample: int, text: Any) -> None:
        out[index][sample] = text
        if isinstance(text, str):
            on_answer(index, sample, text)

    def failed(job: tuple[int, int], exc: RetriesExhausted) -> None:
        index, sample = job
        report.record_failure(
            RetryFailure(index, rows[index].get("id"), sample, exc.attempts, exc.error)
        )

    batch = getattr(client, "generate_batch", None)
    sample = getattr(client, "sample", None)
    with progress_bar(f"eval {config.model_label}", len(jobs)) as advance:
        if batch is not None:  # batching engines: one call per chunk of rows
            size = config.batch_size
            for chunk in [jobs[i : i + size] for i in range(0, len(jobs), size)]:
                try:
                    texts = retried(
                        lambda chunk=chunk: batch(
                            prompts=[prompts[i] for i, _ in chunk],
                            max_tokens=config.max_tokens,
                            temperature=config.temperature,
                        )
                    )
                except RetriesExhausted as exc:
                    for job in chunk:
                        failed(job, exc)
                else:
                    for (i, s), text in zip(chunk, texts, strict=True):
                        answered(i, s, text)
                advance(len(chunk), failures=report.total_failures)
            return out

        if sample is not None and config.num_samples > 1:
            # Hosted APIs sample a row's missing completions in one request where they can.
            missing: dict[int, list[int]] = {}
            for i, s in jobs:
                missing.setdefault(i, []).append(s)

            def row(index: int) -> None:
                slots = missing[index]
                try:
                    texts = retried(
                        lambda: sample(
                            prompt=prompts[index],
                            n=len(slots),
                            max_tokens=config.max_tokens,
                            temperature=config.temperature,
                        )
                    )
                except RetriesExhausted as exc:
                    for s in slots:
                        failed((index, s), exc)
                else:
                    for s, text in zip(slots, texts, strict=True):
                        answered(index, s, text)

            _in_pool(
                config.batch_size, row, list(missing), lambda i: len(missing[i]), advance, report
            )
            return out

        def one(job: tuple[int, int]) -> None:
            index, s = job
            try:
                text = retried(
                    lambda: client.generate(
                        prompt=prompts[index],
                        max_tokens=config.max_tokens,
                        temperature=config.temperature,
                    )
                )
            except RetriesExhausted as exc:
                failed(job, exc)
            else:
                answered(index, s, text)

        # Per-call clients (APIs): batch_size requests in flight at once.
        _in_pool(config.batch_size, one, jobs, lambda job: 1, advance, report)
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
