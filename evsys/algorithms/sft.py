"""Supervised fine-tuning on chat rows, loss on the assistant turns."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from evsys.algorithms.lora import LoraParams
from evsys.registry import register_algorithm


@register_algorithm("sft")
class SFT:
    """Supervised fine-tuning of a LoRA adapter on conversational rows."""

    # What every backend's run reports (run_result.json metrics), besides its own extras.
    metrics: ClassVar[tuple[str, ...]] = ("train/steps", "train/final_loss")

    class Config(LoraParams):
        learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
        num_epochs: int = Field(1, ge=1, description="Passes over the training rows.")
        max_steps: int | None = Field(
            None, gt=0, description="Stop after this many optimizer steps. None: num_epochs."
        )
        batch_size: int = Field(4, ge=1, description="Rows per optimizer step.")
        max_seq_length: int = Field(512, ge=8, description="Longer rows are truncated.")
        lr_schedule: Literal["constant", "linear", "cosine"] = Field(
            "linear", description="Decay of the learning rate after warmup."
        )
        warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of steps to warm up.")
        weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
        assistant_only_loss: bool = Field(
            True, description="Train on assistant tokens only (false: every token)."
        )
        packing: bool = Field(False, description="Pack several rows into one sequence.")
        save_every: int | None = Field(
            None, gt=0, description="Save a checkpoint every N steps. None: only at the end."
        )
        log_every: int = Field(1, ge=1, description="Log metrics every N steps.")

        @model_validator(mode="after")
        def _packing_keeps_the_mask(self) -> SFT.Config:
            if self.packing and self.assistant_only_loss:
                # TRL cannot mask assistant tokens inside packed sequences.
                raise ValueError(
                    "packing and assistant_only_loss cannot both be true; "
                    "set algorithm.params.packing=false or algorithm.params.assistant_only_loss=false"
                )
            return self
