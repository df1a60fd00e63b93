"""Reinforcement learning from verifier rewards (GRPO-style group-relative advantages)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from evsys.algorithms.lora import LoraParams
from evsys.config import VerifierSpec
from evsys.registry import register_algorithm


@register_algorithm("rl")
class RL:
    """On-policy RL: sample a group per prompt, reward with a verifier, centre within the group."""

    # What every backend's run reports (run_result.json metrics), besides its own extras.
    metrics: ClassVar[tuple[str, ...]] = ("train/steps", "train/final_reward_mean")

    @classmethod
    def result_metrics(cls, params: dict[str, Any], backend: str) -> list[str]:
        """``metrics``, and an LLM judge's usage (``train/judge/cost_usd``, …) when one rewards."""
        from evsys.clients.usage import usage_names

        verifier = params.get("verifier")
        judged = isinstance(verifier, dict) and verifier.get("kind") == "llm_judge"
        return [*cls.metrics, *(usage_names("train/judge") if judged else [])]

    class Config(LoraParams):
        learning_rate: float = Field(1e-5, gt=0, description="Peak learning rate.")
        max_steps: int = Field(20, ge=1, description="Optimizer steps.")
        batch_size: int = Field(4, ge=1, description="Prompts per step.")
        group_size: int = Field(
            4, ge=2, description="Completions sampled per prompt; advantages are group-centred."
        )
        max_tokens: int = Field(64, ge=1, description="Generation budget per completion.")
        temperature: float = Field(1.0, gt=0, description="Sampling temperature for rollouts.")
        verifier: VerifierSpec = Field(
            default_factory=lambda: VerifierSpec(kind="exact_match"),
            description=(
                "Scores each completion; its reward drives the update. A harbor task (a row with "
                "a `verifier` payload) is scored by its own verifier instead."
            ),
        )
        loss: Literal["importance_sampling", "ppo"] = Field(
            "importance_sampling", description="Policy-gradient loss."
        )
        kl_coef: float = Field(0.0, ge=0, description="Weight of the KL penalty to the base model.")
        clip_epsilon: float = Field(0.2, gt=0, description="PPO ratio clip range.")
        save_every: int | None = Field(
            None, gt=0, description="Save a checkpoint every N steps. None: only at the end."
        )
        log_every: int = Field(1, ge=1, description="Log metrics every N steps.")
