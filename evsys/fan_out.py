"""Calls that wait on something else (a judge model's HTTP answer, a sandboxed test run), made
side by side: a bounded thread pool, results in the order of the inputs.

Rewarding a batch of rollouts one completion after another makes a step wait for every judge
reply in turn; the replies do not depend on each other, so they are asked for together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_IN_FLIGHT = 8
"""Most calls in flight at once: enough to hide a judge's latency, few enough that a hosted API's
rate limit is not hit by one step alone."""


def map_in_order(
    fn: Callable[[T], R], items: Iterable[T], max_in_flight: int = MAX_IN_FLIGHT
) -> list[R]:
    """``[fn(item) for item in items]`` with up to ``max_in_flight`` calls at once.

    An exception is raised as the loop would raise it: the first one in the inputs' order, once
    the calls already running have ended; the calls not yet started are not made.
    """
    items = list(items)
    workers = max(1, min(max_in_flight, len(items)))
    if workers == 1:  # nothing to overlap: no thread
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evsys-fan-out")
    try:
        return list(pool.map(fn, items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
