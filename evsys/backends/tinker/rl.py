"""RL on the tinker backend: sample a group per prompt from the current weights, reward each
completion with an evsys verifier, centre the rewards within the group, and take one
``importance_sampling`` (or ``ppo``) step on the completions' tokens.

A group whose completions all score alike has zero advantages and teaches nothing (as in GRPO);
its completions are left out of the step. ``kl_coef`` > 0 subtracts ``kl_coef`` times the
per-token log-ratio to the base model from the advantages (the base model scores the samples).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from evsys.algorithms.rl import RL
from evsys.backends.tinker.rendering import prompt_tokens
from evsys.backends.tinker.training import Checkpoints, validate_live
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.rows import prompt_messages, prompt_text
from evsys.task_verifiers import rollout_verifier
from evsys.training import is_save_step, iterate_batches, progress_bar


@dataclass
class _Sample:
    prompt: list[int]
    tokens: list[int]
    logprobs: list[float]
    reward: float
    advantage: float = 0.0
    kl: list[float] = field(default_factory=list)
    """Per-token log(π / π_base), when kl_coef > 0."""


@register_algorithm("rl", backend="tinker")
class TinkerRL:
    def __init__(self, **params: Any):
        self.cfg = RL.Config(**params)

    def train(self, ctx: RunContext) -> RunResult:
        from tinker import types

        cfg, backend, handles = self.cfg, ctx.backend, ctx.handles
        tokenizer = handles["tokenizer"]
        verifier = rollout_verifier(cfg.verifier)
        client = backend.training_client(handles, cfg, ctx.seed)
        checkpoints = Checkpoints(ctx, client)
        reference = None
        if cfg.kl_coef > 0:  # the base model scores every sample
            with checkpoints.errors("creating the reference sampler"):
                future = handles["service"].client.create_sampling_client(
                    base_model=handles["base_model"]
                )
                reference = backend.wait(future, "the reference sampler")
        loss_config = None
        if cfg.loss == "ppo":
            loss_config = {
                "clip_low_threshold": 1 - cfg.clip_epsilon,
                "clip_high_threshold": 1 + cfg.clip_epsilon,
            }
        mean_reward, done = 0.0, 0

        with progress_bar("tinker rl", cfg.max_steps) as advance:
            batches = iterate_batches(ctx.train_rows, cfg.batch_size, cfg.max_steps, ctx.seed)
            for step, batch in enumerate(batches, start=1):
                # Rollouts: a group per prompt, sampled from the weights as they are now.
                with checkpoints.errors(f"sampling the rollouts of step {step}"):
                    sampler = backend.wait(
                        client.save_weights_and_get_sampling_client(), "the current weights"
                    )
                    groups = self._rollouts(ctx, sampler, batch, step, tokenizer, verifier)
                samples = [s for group in groups for s in group]
                rewards = [s.reward for s in samples]
                mean_reward = statistics.fmean(rewards)
                metrics = {
                    "train/reward_mean": mean_reward,
                    "train/reward_std": statistics.pstdev(rewards),
                    "train/frac_zero_std_groups": sum(_centre(g) for g in groups) / len(groups),
                    "train/completion_length": statistics.fmean(len(s.tokens) for s in samples),
                    "train/lr": cfg.learning_rate,
                }

                # Update: one policy-gradient step on the samples that carry a signal.
                learning = [s for s in samples if s.advantage != 0.0 and s.tokens]
                if reference is not None and learning:
                    with checkpoints.errors(f"scoring the samples of step {step}"):
                        metrics["train/kl"] = self._penalise_kl(ctx, reference, learning)
                if learning:
                    data = [_datum(s, cfg.kl_coef) for s in learning]
                    with checkpoints.errors(f"training step {step}"):
                        fwd = client.forward_backward(data, cfg.loss, loss_config)
                        opt = client.optim_step(types.AdamParams(learning_rate=cfg.learning_rate))
                        output = backend.wait(fwd, f"the result of step {step}")
                        backend.wait(opt, f"the optimizer step {step}")
                    if "loss:sum" in output.metrics:  # not every Tinker server reports it
                        tokens = sum(len(s.tokens) for s in learning)
                        metrics["train/loss"] = output.metrics["loss:sum"] / tokens
                if is_save_step(step, cfg.save_every):
                    checkpoints.submit_save(step)
                    checkpoints.collect(step)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    ctx.log_store.log_metrics(metrics, step=step)
                validate_live(ctx, client, step)
                advance(reward=mean_reward)
                done = step
                if ctx.should_stop:  # a callback asked: the final state is this step's
                    break

        final = checkpoints.save_final()
        return RunResult(
            run_id=ctx.run_id,
            status="completed",
            metrics={
                "train/final_reward_mean": mean_reward,
                "train/steps": float(done),
                **verifier.judge_usage(),  # an LLM judge's cost and latency, if one rewarded
            },
            artifacts=final,
        )

    def _rollouts(
        self,
        ctx: RunContext,
        sampler: Any,
        batch: list[dict[str, Any]],
        step: int,
        tokenizer: Any,
        verifier: Any,
    ) -> list[list[_Sample]]:
        """Every prompt's group, submitted at once, scored by the verifier against its row."""
        from tinker import types

        cfg = self.cfg
        prompts = [prompt_tokens(tokenizer, prompt_messages(row)) for row in batch]
        futures = [
            sampler.sample(
                types.ModelInput.from_ints(p),
                cfg.group_size,
                types.SamplingParams(
                    max_tokens=cfg.max_tokens,
                    temperature=cfg.temperature,
                    stop=[tokenizer.eos_token_id],
                    seed=ctx.seed * 1_000_003 + step * 1_009 + i,
                ),
            )
            for i, p in enumerate(prompts)
        ]
        groups = []
        for row, p, future in zip(batch, prompts, futures, strict=True):
            response = ctx.backend.wait(future, f"the samples of step {step}")
            group = []
            for seq in response.sequences:
                text = tokenizer.decode(seq.tokens, skip_special_tokens=True)
                reward = verifier.verify(prompt=prompt_text(row), completion=text, target=row)
                group.append(_Sample(p, list(seq.tokens), list(seq.logprobs or []), reward.reward))
            groups.append(group)
        return groups

    def _penalise_kl(self, ctx: RunContext, reference: Any, samples: list[_Sample]) -> float:
        """Lower each sample's per-token advantages by ``kl_coef`` × log(π / π_base); returns
        the mean per-token log-ratio."""
        from tinker import types

        futures = [
            reference.compute_logprobs(types.ModelInput.from_ints(s.prompt + s.tokens))
            for s in samples
        ]
        ratios = []
        for sample, future in zip(samples, futures, strict=True):
            base = ctx.backend.wait(future, "the reference logprobs")[len(sample.prompt) :]
            sample.kl = [
                lp - (b if b is not None else lp)
                for lp, b in zip(sample.logprobs, base, strict=True)
            ]
            ratios += sample.kl
        return statistics.fmean(ratios) if ratios else 0.0


def _centre(group: list[_Sample]) -> bool:
    """Set the group's advantages (reward minus the group mean); True if they are all zero."""
    mean = statistics.fmean(s.reward for s in group)
    for s in group:
        s.advantage = s.reward - mean
    return all(s.advantage == 0.0 for s in group)


def _datum(sample: _Sample, kl_coef: float) -> Any:
    """The prompt and completion as one sequence; only the completion's tokens carry advantage."""
    import numpy as np
    from tinker import types

    tokens = sample.prompt + sample.tokens
    pad = len(sample.prompt) - 1
    advantages = np.full(len(sample.tokens), sample.advantage, dtype=np.float32)
    if sample.kl:
        advantages -= kl_coef * np.asarray(sample.kl, dtype=np.float32)
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": np.asarray(tokens[1:], dtype=np.int64),
            "logprobs": np.concatenate(
                [np.zeros(pad, np.float32), np.asarray(sample.logprobs, np.float32)]
            ),
            "advantages": np.concatenate([np.zeros(pad, np.float32), advantages]),
        },
    )
