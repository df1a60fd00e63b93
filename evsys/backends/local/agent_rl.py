"""Agent RL on the local backend: TRL's GRPOTrainer with evsys's episodes as its rollouts.

TRL 1.16's ``rollout_func`` hands the trainer's prompts to a function of ours, which plays one
episode per prompt (the RepeatSampler already repeats each task ``group_size`` times) with the
live model, token in, token out (:mod:`evsys.agents.episode`). It returns each episode's opening
as ``prompt_ids``, everything after it as ``completion_ids``, and ``env_mask`` (1 on the model's
own tokens): TRL multiplies its loss mask by it, so tool results, observations and template
tokens are never trained. The episode's reward reaches TRL through a reward function; a failed
episode returns None, which TRL leaves out of its group's mean and gives no advantage.

The dataset's ``prompt`` is the task's row index: the environment, not the dataset, writes the
conversation. Losses map onto TRL as in :mod:`evsys.backends.local.rl`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from evsys.agents.episode import Action, Episode
from evsys.agents.rollouts import play_episodes, step_metrics
from evsys.algorithms.agent_rl import AgentRL
from evsys.backends.local.lora_merge import merged_lora
from evsys.backends.local.rl import _LOSSES, _METRICS, _NO_CLIP
from evsys.backends.local.trainer import train_adapter
from evsys.backends.local.vision import refuse_images_in_recipe
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.task_verifiers import rollout_verifier

# Episode metrics, logged through TRL's log_metric (averaged per logging step) → evsys names.
_EPISODE_METRICS = {
    "episodes/reward_mean": "train/reward_mean",
    "episodes/turns": "train/episode_turns",
    "episodes/model_tokens": "train/model_tokens",
    "episodes/failed": "train/failed_episodes",
    "episodes/truncated": "train/truncated_episodes",
}


@dataclass
class _Tally:
    """What the rollouts saw, for the reward function to log and the run's result."""

    pending: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    failed: float = 0.0


@register_algorithm("agent_rl", backend="local")
class LocalAgentRL:
    metrics: ClassVar[tuple[str, ...]] = ("train/runtime_s",)  # besides the recipe's

    def __init__(self, **params: Any):
        self.cfg = AgentRL.Config(**params)

    def train(self, ctx: RunContext) -> RunResult:
        from datasets import Dataset
        from transformers import set_seed
        from trl import GRPOConfig, GRPOTrainer

        cfg, handles = self.cfg, ctx.handles
        loss_type, clipped = _LOSSES[cfg.loss]
        set_seed(ctx.seed)  # before the LoRA weights are drawn; rollouts sample from it too

        refuse_images_in_recipe(ctx.train_rows, "agent_rl")
        # Data: one prompt per task, its row index; the environment writes the conversation.
        rows = ctx.train_rows
        dataset = Dataset.from_list([{"prompt": str(i)} for i in range(len(rows))])
        verifier = rollout_verifier(cfg.verifier) if cfg.verifier is not None else None
        tally = _Tally()

        def rollout(prompts: list[str], trainer: Any) -> dict[str, Any]:
            act = _sampler(trainer, handles["tokenizer"], cfg.temperature)
            tasks = [rows[int(p)] for p in prompts]
            tokenizer = handles["tokenizer"]
            episodes = play_episodes(tasks, cfg, act, verifier, tokenizer)
            groups = [
                episodes[i : i + cfg.group_size] for i in range(0, len(episodes), cfg.group_size)
            ]
            tally.last = step_metrics(groups)
            tally.failed += tally.last["train/failed_episodes"]
            tally.pending = {k: tally.last[v] for k, v in _EPISODE_METRICS.items()}
            return _trl_rollout(episodes, tokenizer)

        def episode_reward(
            episode_reward: list[float | None], log_metric: Callable[[str, float], None], **_: Any
        ) -> list[float | None]:
            for name, value in tally.pending.items():
                log_metric(name, value)
            return list(episode_reward)

        args = ctx.backend.trainer_args(
            GRPOConfig,
            handles,
            output_dir=str(ctx.checkpoint_dir),
            seed=ctx.seed,
            data_seed=ctx.seed,
            learning_rate=cfg.learning_rate,
            max_steps=cfg.max_steps,
            per_device_train_batch_size=cfg.batch_size * cfg.group_size,
            num_generations=cfg.group_size,
            max_completion_length=cfg.max_tokens,  # our rollouts enforce it per episode
            temperature=cfg.temperature,
            beta=0.0,
            loss_type=loss_type,
            epsilon=cfg.clip_epsilon if clipped else _NO_CLIP,
            use_vllm=False,
            logging_steps=cfg.log_every,
            save_strategy="no",  # evsys saves adapters itself, as step_N/ and final/
        )
        metric_names = {**{k: v for k, v in _METRICS.items() if k != "reward"}, **_EPISODE_METRICS}
        with warnings.catch_warnings():
            # TRL warns that rollout_func is experimental: evsys pins the TRL it was built on.
            warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
            result = train_adapter(
                ctx,
                GRPOTrainer,
                cfg,
                label="local agent rl",
                metric_names=metric_names,
                headline="episodes/reward_mean",
                reward_funcs=episode_reward,
                rollout_func=rollout,
                args=args,
                train_dataset=dataset,
            )
        result.metrics["train/final_episode_turns"] = tally.last.get("train/episode_turns", 0.0)
        result.metrics["train/failed_episodes"] = tally.failed
        return result


def _trl_rollout(episodes: list[Episode], tokenizer: Any) -> dict[str, Any]:
    """Episodes in the shape TRL's ``rollout_func`` returns. An episode that failed before its
    first turn still needs a token on each side: an end token, masked."""
    end = [tokenizer.eos_token_id]
    return {
        "prompt_ids": [e.prompt_tokens or end for e in episodes],
        "completion_ids": [e.completion_tokens or end for e in episodes],
        "env_mask": [e.mask if e.completion_tokens else [0] for e in episodes],
        "logprobs": None,  # TRL computes the old policy's logprobs itself
        "episode_reward": [None if e.status == "failed" else e.reward for e in episodes],
    }


def _sampler(trainer: Any, tokenizer: Any, temperature: float) -> Callable[..., list[Action]]:
    """``act`` for the episode runner: the live model samples every live episode's next turn
    in one batch, each within its own token budget."""
    import torch

    def act(episodes: list[Episode], budgets: list[int]) -> list[Action]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        contexts = [e.context for e in episodes]
        width, pad, eos = max(map(len, contexts)), tokenizer.pad_token_id, tokenizer.eos_token_id
        ids = [[pad] * (width - len(c)) + c for c in contexts]  # left padding
        attention = [[0] * (width - len(c)) + [1] * len(c) for c in contexts]
        training = model.training
        model.eval()  # no dropout while sampling
        try:
            with torch.no_grad(), merged_lora(model):  # one matmul per projection, not three
                out = model.generate(
                    input_ids=torch.tensor(ids, device=model.device),
                    attention_mask=torch.tensor(attention, device=model.device),
                    max_new_tokens=max(budgets),
                    do_sample=True,
                    temperature=temperature,
                    top_k=0,
                    top_p=1.0,
                    pad_token_id=pad,
                    eos_token_id=eos,
                )
        finally:
            model.train(training)
        actions = []
        for row, budget in zip(out[:, width:].tolist(), budgets, strict=True):
            tokens = row[:budget]
            if eos in tokens:  # the turn ends with its end token; padding follows it
                tokens = tokens[: tokens.index(eos) + 1]
            actions.append(Action(tokenizer.decode(tokens, skip_special_tokens=True), tokens))
        return actions

    return act
