"""On-policy distillation: the student samples, a teacher's next-token distribution grades it."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from evsys.algorithms.lora import LoraParams
from evsys.registry import register_algorithm


@register_algorithm("distill")
class Distill:
    """On-policy distillation: the student learns ``teacher``'s token distributions.

    A LoRA adapter on the student (``model``) is trained to match ``teacher`` token by token on
    completions the student samples for the training prompts (generalized JSD, as in GKD).
    """

    # What every backend's run reports (run_result.json metrics), besides its own extras.
    metrics: ClassVar[tuple[str, ...]] = ("train/steps", "train/final_loss")

    class Config(LoraParams):
        teacher: str = Field(
            description="Teacher model: a name the backend resolves or a local directory. It must "
            "share the student's vocabulary."
        )
        teacher_checkpoint: str | None = Field(
            None, description="Adapter (or mock checkpoint) applied on top of the teacher."
        )
        learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
        max_steps: int = Field(20, ge=1, description="Optimizer steps.")
        batch_size: int = Field(4, ge=1, description="Prompts per step.")
        max_tokens: int = Field(64, ge=1, description="Tokens the student samples per prompt.")
        temperature: float = Field(1.0, gt=0, description="Student sampling temperature.")
        beta: float = Field(
            0.5,
            ge=0,
            le=1,
            description="Divergence: 0 forward KL, 0.5 Jensen-Shannon, 1 reverse KL.",
        )
        save_every: int | None = Field(
            None, gt=0, description="Save a checkpoint every N steps. None: only at the end."
        )
        log_every: int = Field(1, ge=1, description="Log metrics every N steps.")
