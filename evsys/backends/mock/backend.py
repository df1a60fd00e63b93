"""The mock engine: a :class:`MockPolicy` per run instead of a model.

With ``backend.params.landscape`` set, SFT's score becomes a known function of its learning rate,
LoRA rank and schedule, for tests and benchmarks of optimisers (``hydra/sweeper=evolve``): each
training row is learned with probability ``q`` (:mod:`evsys.backends.mock.landscape`: a main peak
placed and shaped by config, lower peaks, a factor per schedule, seeded noise), so exact_match
peaks at the landscape's optimum; the policy's memory is then large enough for every row, so the
rank acts through ``q`` alone. Each run reports ``q`` without noise (``train/learn_probability``:
1 at the optimum, a benchmark's truth) and a toy price ``train/cost_usd`` = rank × steps × 1e-5,
a second objective that favours small ranks. Without a landscape, nothing changes: the learning
rate and rank act as they always have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from evsys.backends.mock.landscape import Landscape
from evsys.backends.mock.policy import MockPolicy
from evsys.config import ModelConfig, Strict
from evsys.errors import BackendError
from evsys.registry import register_backend

COST_PER_RANK_STEP = 1e-5


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
            description="Make SFT's score a known function of learning_rate, lora_rank and "
            "lr_schedule peaking where this says (a test bed for optimisers). None: the usual "
            "toy policy.",
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
