"""Supervised fine-tuning on chat rows, loss on the assistant turns.

A subclass registered under its own name changes what is trained on (``build_batch``) and how
it is scored (``loss``); the local backend runs it through TRL (a data collator and the
trainer's ``compute_loss``), the tinker backend through ``forward_backward_custom``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from evsys.algorithms.lora import LoraParams
from evsys.registry import register_algorithm

if TYPE_CHECKING:
    import torch


@dataclass
class Example:
    """One training sequence: the model reads ``input_tokens`` and, at each position, is scored
    on the next token, ``target_tokens`` (``tokens[1:]`` of the rendered chat), by ``weights``."""

    input_tokens: list[int]
    target_tokens: list[int]
    weights: list[float]
    row: dict[str, Any] = field(default_factory=dict)
    """The training row it came from: what a loss may read besides the tokens."""


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
        def _one_length_of_training(self) -> SFT.Config:
            if self.max_steps is not None and self.num_epochs > 1:
                # Every backend stops at max_steps, however many passes that is.
                raise ValueError(
                    f"num_epochs={self.num_epochs} would be ignored: max_steps={self.max_steps} "
                    "alone decides how long the run trains; set algorithm.params.num_epochs=1 "
                    "or algorithm.params.max_steps=null"
                )
            return self

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def build_batch(self, rows: Sequence[dict[str, Any]], tokenizer: Any) -> list[Example]:
        """What a training example is. Here: each chat rendered with the model's own template,
        weight 1 on the assistant's tokens (every token with ``assistant_only_loss=false``),
        truncated to ``max_seq_length``; a row left with nothing to train on is dropped."""
        from evsys.backends.chat_rendering import chat_tokens, conversation, full_tokens

        examples = []
        for row in rows:
            if self.cfg.assistant_only_loss:
                tokens, mask = chat_tokens(tokenizer, conversation(row))
            else:
                tokens = full_tokens(tokenizer, conversation(row))
                mask = [1] * len(tokens)
            tokens, weights = tokens[: self.cfg.max_seq_length], mask[1 : self.cfg.max_seq_length]
            if sum(weights):
                examples.append(Example(tokens[:-1], tokens[1:], [float(w) for w in weights], row))
        return examples

    def loss(self, batch: list[Example], logprobs: list[torch.Tensor]) -> torch.Tensor:
        """How a batch is scored: ``logprobs[i][t]`` is the model's log-probability of
        ``batch[i].target_tokens[t]``; the loss is minimised. Here: the negative
        log-likelihood per weighted token."""
        import torch

        weights = [
            torch.tensor(e.weights, dtype=lp.dtype, device=lp.device)
            for e, lp in zip(batch, logprobs, strict=True)
        ]
        nll = sum(-(w * lp).sum() for w, lp in zip(weights, logprobs, strict=True))
        return nll / torch.clamp(sum(w.sum() for w in weights), min=1e-9)

    @classmethod
    def custom_training(cls) -> bool:
        """Whether this recipe changes ``build_batch`` or ``loss``: backends then train with
        them instead of their own SFT path."""
        return cls.build_batch is not SFT.build_batch or cls.loss is not SFT.loss
