"""Multi-turn agent RL: episodes in a registered environment, group-centred advantages."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from evsys.algorithms.lora import LoraParams
from evsys.config import EnvironmentSpec, VerifierSpec
from evsys.registry import register_algorithm


@register_algorithm("agent_rl")
class AgentRL:
    """On-policy RL over episodes: each task is played ``group_size`` times in its own
    environment, turn by turn; an episode's reward (the environment's, or a verifier's verdict
    on its last turn) minus its group's mean is the advantage of every token the model wrote in
    it. Tool results, observations and template tokens are never trained.
    """

    # What every backend's run reports (run_result.json metrics), besides its own extras.
    metrics: ClassVar[tuple[str, ...]] = (
        "train/steps",
        "train/final_reward_mean",
        "train/final_episode_turns",
        "train/failed_episodes",
    )

    class Config(LoraParams):
        environment: EnvironmentSpec = Field(
            default_factory=lambda: EnvironmentSpec(kind="calculator"),
            description="The environment every episode runs in (`evsys list --kind "
            "environment`); its params are validated by its own Config. The data rows are its "
            "tasks.",
        )
        learning_rate: float = Field(1e-5, gt=0, description="Peak learning rate.")
        max_steps: int = Field(20, ge=1, description="Optimizer steps.")
        batch_size: int = Field(4, ge=1, description="Tasks per step.")
        group_size: int = Field(
            4, ge=2, description="Episodes played per task; advantages are group-centred."
        )
        max_turns: int = Field(
            4,
            ge=1,
            description="Model turns per episode; an episode still going after them "
            "ends truncated, with the reward it has.",
        )
        max_tokens: int = Field(
            128,
            ge=1,
            description="Tokens the model may write in one episode, over all its "
            "turns (the mock backend counts words); reaching it ends the episode truncated.",
        )
        max_turn_tokens: int | None = Field(
            None,
            ge=1,
            description="Tokens the model may write in one turn (a turn cut there still "
            "counts). None: what is left of the episode's max_tokens.",
        )
        temperature: float = Field(1.0, gt=0, description="Sampling temperature for rollouts.")
        verifier: VerifierSpec | None = Field(
            None,
            description="None: an episode's reward is the sum of the environment's step "
            "rewards. Set: the verifier scores the model's last turn against the task row "
            "instead (a harbor task by its own verifier).",
        )
        loss: Literal["importance_sampling", "ppo"] = Field(
            "importance_sampling", description="Policy-gradient loss."
        )
        clip_epsilon: float = Field(0.2, gt=0, description="PPO ratio clip range.")
        save_every: int | None = Field(
            None, gt=0, description="Save a checkpoint every N steps. None: only at the end."
        )
        log_every: int = Field(1, ge=1, description="Log metrics every N steps.")
