"""The mock engine: a :class:`MockPolicy` per run instead of a model.

With ``backend.params.landscape`` set, SFT's score becomes a known smooth function of two
hyperparameters, for tests and benchmarks of optimisers (``hydra/sweeper=evolve``): each training
row is learned with probability

    q(lr, rank) = exp(-((ln(lr / lr*) / 1.5)² + (log2(rank / rank*) / 1.5)²) / 2)

(``lr*``, ``rank*``: the landscape's ``learning_rate`` and ``lora_rank``), so exact_match peaks
at the landscape's optimum and falls off smoothly around it; the policy's memory is then large
enough for every row, so the rank acts through ``q`` alone. Each run reports ``q`` itself
(``train/learn_probability``: the optimum is 1, a benchmark's truth) and a toy price
``train/cost_usd`` = rank × steps × 1e-5, a second objective that favours small ranks. Without a
landscape, nothing changes: the learning rate and rank act as they always have.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from evsys.backends.mock.policy import MockPolicy
from evsys.config import ModelConfig, Strict
from evsys.errors import BackendError
from evsys.registry import register_backend

LR_WIDTH, RANK_WIDTH = 1.5, 1.5  # natural-log units of the lr, log2 units of the rank
COST_PER_RANK_STEP = 1e-5


class Landscape(Strict):
    """Where the mock's SFT score peaks (see the module docstring for the function)."""

    learning_rate: float = Field(3e-4, gt=0, description="The learning rate that learns best.")
    lora_rank: int = Field(16, ge=1, description="The LoRA rank that learns best.")

    def learn_probability(self, learning_rate: float, lora_rank: int) -> float:
        lr_term = math.log(learning_rate / self.learning_rate) / LR_WIDTH
        rank_term = math.log2(lora_rank / self.lora_rank) / RANK_WIDTH
        return math.exp(-(lr_term**2 + rank_term**2) / 2)


@register_backend("mock")
class MockBackend:
    """Instant and deterministic: for tests, dry runs and sweeps of the machinery itself."""

    inference_client: ClassVar[str] = "mock"

    class Config(Strict):
        capacity_per_rank: int = Field(
            8, ge=1, description="Prompts the toy policy remembers per unit of LoRA rank."
        )
        fail_at_step: int | None = Field(
            None, ge=1, description="Raise at this training step, to test failure handling."
        )
        landscape: Landscape | None = Field(
            None,
            description="Make SFT's score a known smooth function of learning_rate and "
            "lora_rank peaking here (a test bed for optimisers). None: the usual toy policy.",
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def prepare(self, *, model: ModelConfig, run_dir: Path) -> dict[str, Any]:
        policy = None
        if model.load_checkpoint_path:
            try:
                policy = MockPolicy.load(model.load_checkpoint_path)
            except (OSError, ValueError, KeyError) as exc:
                raise BackendError(
                    f"cannot load mock checkpoint '{model.load_checkpoint_path}': {exc}"
                ) from exc
        return {"model_name": model.name, "policy": policy}

    def check_step(self, step: int) -> None:
        if self.cfg.fail_at_step is not None and step >= self.cfg.fail_at_step:
            raise BackendError(
                f"mock backend failed at step {step} (fail_at_step={self.cfg.fail_at_step})"
            )

    def teardown(self, handles: dict[str, Any]) -> None:
        handles.clear()
