"""The mock backend's optimiser test bed: SFT's score as a known function of its hyperparameters.

With ``backend.params.landscape`` set, each SFT training row is learned with probability

    q = factor[lr_schedule] × max(peak(lr, rank), height_i × peak_i(lr, rank) …)
    peak(lr, rank) = exp(-((ln(lr / lr*) / lr_width)² + (log2(rank / rank*) / rank_width)²) / 2)

The main peak (``learning_rate``, ``lora_rank``: ``lr*``, ``rank*``) has height 1; ``peaks`` adds
lower ones (a local optimum to be trapped in); ``lr_schedule`` gives a factor per schedule (a
categorical axis; a schedule not named keeps 1); ``noise`` adds a Gaussian to ``q`` drawn from
the run's seed and its hyperparameters, so a search sees a rough surface while the truth stays
smooth. The optimum is the main peak with the best schedule: :meth:`Landscape.optimum`.
"""

from __future__ import annotations

import math
import random
import typing
from typing import Any

from pydantic import Field, model_validator

from evsys.algorithms.sft import SFT
from evsys.config import Strict

SCHEDULES: tuple[str, ...] = typing.get_args(SFT.Config.model_fields["lr_schedule"].annotation)
DEFAULT_SCHEDULE = SFT.Config.model_fields["lr_schedule"].default


class Peak(Strict):
    """A local optimum beside the main one."""

    learning_rate: float = Field(gt=0, description="Where this peak's learning rate lies.")
    lora_rank: float = Field(gt=0, description="Where this peak's LoRA rank lies.")
    height: float = Field(gt=0, le=1, description="Its value at its top (the main peak's is 1).")
    lr_width: float = Field(1.5, gt=0, description="Its width in natural-log units of the lr.")
    rank_width: float = Field(1.5, gt=0, description="Its width in log2 units of the rank.")

    def value(self, learning_rate: float, lora_rank: float) -> float:
        lr_term = math.log(learning_rate / self.learning_rate) / self.lr_width
        rank_term = math.log2(lora_rank / self.lora_rank) / self.rank_width
        return self.height * math.exp(-(lr_term**2 + rank_term**2) / 2)


class Landscape(Strict):
    """Where the mock's SFT score peaks and how it is shaped (see the module docstring)."""

    learning_rate: float = Field(3e-4, gt=0, description="The learning rate that learns best.")
    lora_rank: int = Field(16, ge=1, description="The LoRA rank that learns best.")
    lr_width: float = Field(
        1.5, gt=0, description="The main peak's width in natural-log units of the lr."
    )
    rank_width: float = Field(1.5, gt=0, description="The main peak's width in log2 units.")
    peaks: list[Peak] = Field(
        default_factory=list, description="Lower peaks beside the main one (local optima)."
    )
    lr_schedule: dict[str, float] = Field(
        default_factory=dict,
        description="A factor in (0, 1] per lr_schedule (a categorical axis); unnamed: 1.",
    )
    noise: float = Field(
        0.0, ge=0, le=1, description="Std of the Gaussian added to q per run (seeded)."
    )

    @model_validator(mode="after")
    def _factors_in_range(self) -> Landscape:
        unknown = sorted(set(self.lr_schedule) - set(SCHEDULES))
        if unknown:
            raise ValueError(f"unknown lr_schedule {unknown}; expected some of {list(SCHEDULES)}")
        bad = {k: v for k, v in self.lr_schedule.items() if not 0 < v <= 1}
        if bad:
            raise ValueError(f"lr_schedule factors must lie in (0, 1]: {bad}")
        return self

    def _main(self) -> Peak:
        return Peak(
            learning_rate=self.learning_rate,
            lora_rank=self.lora_rank,
            height=1.0,
            lr_width=self.lr_width,
            rank_width=self.rank_width,
        )

    def value(
        self, learning_rate: float, lora_rank: float, lr_schedule: str = DEFAULT_SCHEDULE
    ) -> float:
        """``q`` without noise: the truth a benchmark scores a search by (1 at most)."""
        heights = [p.value(learning_rate, lora_rank) for p in [self._main(), *self.peaks]]
        return self.lr_schedule.get(lr_schedule, 1.0) * max(heights)

    def learn_probability(
        self,
        learning_rate: float,
        lora_rank: float,
        lr_schedule: str = DEFAULT_SCHEDULE,
        seed: int = 0,
    ) -> float:
        """``q`` as a run meets it: with its noise (the same for the same run), within [0, 1]."""
        q = self.value(learning_rate, lora_rank, lr_schedule)
        if self.noise:
            # Seeded by the run's seed and its point, as a string: stable across processes.
            rng = random.Random(f"landscape:{seed}:{learning_rate!r}:{lora_rank!r}:{lr_schedule}")
            q += rng.gauss(0.0, self.noise)
        return min(1.0, max(0.0, q))

    def optimum(self) -> dict[str, Any]:
        """The best point: the main peak, with the schedule of the highest factor."""
        best: dict[str, Any] = {"learning_rate": self.learning_rate, "lora_rank": self.lora_rank}
        if self.lr_schedule:
            best["lr_schedule"] = max(SCHEDULES, key=lambda s: self.lr_schedule.get(s, 1.0))
        return best
