"""RL on the local backend: TRL's GRPOTrainer trains a PEFT LoRA adapter on verifier rewards.

Rollouts and the loss forward take evsys's faster path (:mod:`evsys.backends.local.grpo`: merged
LoRA weights for sampling, each group's prompt run once); the rewards of a batch are asked for
side by side. The recipe
maps onto ``GRPOConfig`` as follows (generation runs with transformers, never vLLM):

- ``batch_size`` prompts per step: ``per_device_train_batch_size = batch_size * group_size``
  completions with one generation batch per optimizer step (TRL's rule: the generation batch,
  ``per_device_train_batch_size * steps_per_generation``, must hold whole groups).
- ``group_size`` → ``num_generations``; ``max_tokens`` → ``max_completion_length``;
  ``temperature`` → ``temperature``; ``kl_coef`` → ``beta`` (0: no reference model is kept).
- ``loss`` → ``loss_type="dapo"`` (token-level policy gradient, averaged over the batch's tokens),
  with ``epsilon`` chosen per loss: ``ppo`` clips the ratio at ``clip_epsilon``;
  ``importance_sampling`` does not clip (``epsilon`` so wide it never binds). With TRL's default
  ``num_iterations=1`` the two give the same update: the ratio is 1 on fresh samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from evsys.algorithms.rl import RL
from evsys.backends.local.trainer import train_adapter
from evsys.backends.local.vision import refuse_images_in_recipe
from evsys.errors import ConfigError
from evsys.fan_out import map_in_order
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.rows import prompt_messages, prompt_text
from evsys.task_verifiers import rollout_verifier

# evsys loss → (TRL loss_type, whether clip_epsilon applies).
_LOSSES = {"ppo": ("dapo", True), "importance_sampling": ("dapo", False)}
_NO_CLIP = 1e9  # a ratio clip range no importance ratio reaches

# TRL's log keys → evsys metric names (the rest of TRL's logs are dropped).
_METRICS = {
    "reward": "train/reward_mean",
    "reward_std": "train/reward_std",
    "frac_reward_zero_std": "train/frac_zero_std_groups",
    "learning_rate": "train/lr",
    "loss": "train/loss",
    "kl": "train/kl",
    "grad_norm": "train/grad_norm",
    "completions/mean_length": "train/completion_length",
}


@register_algorithm("rl", backend="local")
class LocalRL:
    metrics: ClassVar[tuple[str, ...]] = ("train/runtime_s",)  # besides the recipe's

    def __init__(self, **params: Any):
        self.cfg = RL.Config(**params)

    def train(self, ctx: RunContext) -> RunResult:
        import torch
        from datasets import Dataset
        from transformers import set_seed
        from trl import GRPOConfig

        from evsys.backends.local.decode_threads import DecodeThreads
        from evsys.backends.local.grpo import fast_grpo_trainer

        cfg, handles = self.cfg, ctx.handles

        # Check: every recipe loss needs a TRL counterpart.
        if cfg.loss not in _LOSSES:
            raise ConfigError(
                f"algorithm.params.loss={cfg.loss!r} has no TRL GRPO counterpart on the local "
                f"backend; choose one of {sorted(_LOSSES)}, or run it on another backend"
            )
        loss_type, clipped = _LOSSES[cfg.loss]
        set_seed(ctx.seed)  # before the LoRA weights are drawn

        # Data: the conversation up to the assistant turn; the row index finds the verifier target.
        refuse_images_in_recipe(ctx.train_rows, "rl")
        rows = ctx.train_rows
        dataset = Dataset.from_list(
            [{"prompt": prompt_messages(row), "row_index": i} for i, row in enumerate(rows)]
        )
        verifier = rollout_verifier(cfg.verifier)
        reward = verifier_reward(verifier, rows, name=cfg.verifier.kind)

        # Trainer config: the recipe's fields, the engine's precision, the user's extra TRL args.
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
            max_completion_length=cfg.max_tokens,
            temperature=cfg.temperature,
            beta=cfg.kl_coef,
            loss_type=loss_type,
            epsilon=cfg.clip_epsilon if clipped else _NO_CLIP,
            use_vllm=False,
            logging_steps=cfg.log_every,
            save_strategy="no",  # evsys saves adapters itself, as step_N/ and final/
        )

        # Train: a LoRA adapter, metrics and checkpoints through the shared evsys callback.
        threads = DecodeThreads(torch.get_num_threads())  # as the backend sized them
        result = train_adapter(
            ctx,
            fast_grpo_trainer(threads),
            cfg,
            label="local rl",
            metric_names=_METRICS,
            headline="reward",
            reward_funcs=reward,
            args=args,
            train_dataset=dataset,
        )
        result.metrics |= verifier.judge_usage()  # an LLM judge's cost and latency, if any
        result.extras["decode_threads"] = threads.summary()
        return result


def verifier_reward(
    verifier: Any, rows: list[dict[str, Any]], *, name: str
) -> Callable[..., list[float]]:
    """A TRL reward function: ``verifier.verify(...).reward`` of each completion against its row.

    TRL passes the dataset's extra columns (here ``row_index``) as keyword lists, one entry per
    completion; the row itself is the verifier's target, as on the other backends. The batch's
    completions are scored concurrently (:func:`evsys.fan_out.map_in_order`), in order.
    """

    def reward(completions: list[Any], row_index: list[int], **_: Any) -> list[float]:
        def score(pair: tuple[Any, int]) -> float:
            row = rows[pair[1]]
            return verifier.verify(
                prompt=prompt_text(row), completion=_text(pair[0]), target=row
            ).reward

        # Side by side: a judge model's replies do not wait on each other.
        return map_in_order(score, zip(completions, row_index, strict=True))

    reward.__name__ = name  # TRL logs it as rewards/<name>/mean
    return reward


def _text(completion: Any) -> str:
    """A completion as text: conversational completions are lists of messages."""
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion)
    return str(completion)
