"""How many torch threads the rollout decode loop runs on: the faster of one and all, as timed.

A decode step is one token for each row of the batch: on a small model its operations are too
small to split, and a second OpenMP thread adds a barrier to every one of them; on a bigger model
the matmuls are worth splitting. Measured on 2 cores with the tiny test model (2 prompts × 4
completions): idle, a decode step took 2.0 ms on one thread and 2.2 ms on two; with another
process keeping one core busy, a rollout took 0.09 s on one thread and 2.3 s on two (the two
threads wait on each other at every operation). Neither the model's size nor the core count
says which wins, so the first decode steps of a run alternate between one thread and the arm's
threads, and the median of each picks the one the rest of the run uses.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

TRIALS = 8
"""Decode steps timed on each side before choosing."""


class DecodeThreads:
    """The thread count for each decode step of one run; ``chosen`` once the trials are in."""

    def __init__(self, threads: int, trials: int = TRIALS):
        self.candidates = sorted({1, max(1, threads)})
        self.trials = trials
        self.times: dict[int, list[float]] = {n: [] for n in self.candidates}
        self.chosen: int | None = self.candidates[0] if len(self.candidates) == 1 else None

    def next(self) -> int:
        """Threads for the next step: the choice, or during the trials the side with fewer."""
        if self.chosen is not None:
            return self.chosen
        return min(self.candidates, key=lambda n: len(self.times[n]))

    def record(self, threads: int, seconds: float) -> None:
        if self.chosen is not None:
            return
        self.times[threads].append(seconds)
        if all(len(times) >= self.trials for times in self.times.values()):
            self.chosen = min(self.candidates, key=lambda n: statistics.median(self.times[n]))

    @contextmanager
    def step(self) -> Iterator[None]:
        """Run one decode step on the threads :meth:`next` gives, timing it during the trials."""
        import torch

        threads, before = self.next(), torch.get_num_threads()
        if threads != before:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(threads, time.perf_counter() - start)
            if threads != before:
                torch.set_num_threads(before)

    def summary(self) -> dict[str, Any]:
        """For the run record: the choice and the median step time of each side, in ms."""
        return {
            "chosen": self.chosen,
            "median_step_ms": {
                str(n): round(1000 * statistics.median(t), 3) if t else None
                for n, t in self.times.items()
            },
        }
