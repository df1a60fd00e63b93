"""Pieces every training loop needs: seeded batches, a schedule of saves, a progress bar."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from evsys.report import format_number

T = TypeVar("T")


def total_steps(n_rows: int, batch_size: int, num_epochs: int, max_steps: int | None) -> int:
    """Optimizer steps of a run: ``max_steps`` when set, else every full pass of every epoch."""
    per_epoch = max(1, math.ceil(n_rows / batch_size))
    return max_steps if max_steps is not None else per_epoch * num_epochs


def iterate_batches(rows: Sequence[T], batch_size: int, steps: int, seed: int) -> Iterator[list[T]]:
    """``steps`` batches, reshuffling (seeded) at each pass over ``rows``."""
    if not rows:
        raise ValueError("no training rows")
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        batch = []
        while len(batch) < batch_size:
            if not order:
                order = list(range(len(rows)))
                rng.shuffle(order)
            batch.append(rows[order.pop()])
        yield batch


def is_save_step(step: int, save_every: int | None) -> bool:
    """Whether to checkpoint after 1-based ``step`` (the final checkpoint is saved separately)."""
    return save_every is not None and step % save_every == 0


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Any]:
    """A rich progress bar; ``advance(n=1, **fields)`` moves it. Quiet when not on a terminal."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    ]
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total, status="")

        def advance(n: int = 1, **fields: float) -> None:
            status = "  ".join(f"{k}={format_number(v)}" for k, v in fields.items())
            progress.update(task, advance=n, status=status)

        yield advance


def scheduled_lr(
    peak: float,
    schedule: str,
    step: int,
    steps: int,
    warmup_ratio: float = 0.0,
    *,
    before_step: bool = False,
) -> float:
    """Learning rate at 1-based ``step``: linear warmup, then constant, linear or cosine decay.

    The decay is measured after the step (the last step's rate is 0), or with ``before_step``
    before it, for an optimizer that is handed the rate the step trains with (the last step
    still learns, at peak / decay steps).
    """
    warmup = int(steps * warmup_ratio)
    if step <= warmup:
        return peak * step / warmup
    progress = (step - before_step - warmup) / max(1, steps - warmup)
    if schedule == "linear":
        return peak * (1 - progress)
    if schedule == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * progress))
    return peak
