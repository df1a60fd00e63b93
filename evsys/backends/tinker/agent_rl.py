"""Agent RL on the tinker backend: episodes sampled turn by turn from the current weights, then
one ``importance_sampling`` (or ``ppo``) step on them.

Each turn of every live episode is sampled at once (one request each), from the episode's
tokens so far, token in, token out (:mod:`evsys.agents.episode`). An episode becomes one datum:
its opening and completion as one sequence, the sampler's logprobs on the model's tokens, and
its group-centred advantage on exactly those tokens; tool results, observations and template
tokens carry advantage 0, so they are never trained. Groups whose episodes all score alike,
and failed episodes, are left out of the step.
"""

from __future__ import annotations

from typing import Any

from evsys.agents.episode import Action, Episode
from evsys.agents.rollouts import final_metrics, group_advantages, play_groups, step_metrics
from evsys.algorithms.agent_rl import AgentRL
from evsys.backends.tinker.training import Checkpoints, validate_live
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.task_verifiers import rollout_verifier
from evsys.training import is_save_step, iterate_batches, progress_bar


@register_algorithm("agent_rl", backend="tinker")
class TinkerAgentRL:
    def __init__(self, **params: Any):
        self.cfg = AgentRL.Config(**params)

    def train(self, ctx: RunContext) -> RunResult:
        from tinker import types

        cfg, backend, handles = self.cfg, ctx.backend, ctx.handles
        tokenizer = handles["tokenizer"]
        verifier = rollout_verifier(cfg.verifier) if cfg.verifier is not None else None
        client = backend.training_client(handles, cfg, ctx.seed)
        checkpoints = Checkpoints(ctx, client)
        loss_config = None
        if cfg.loss == "ppo":
            loss_config = {
                "clip_low_threshold": 1 - cfg.clip_epsilon,
                "clip_high_threshold": 1 + cfg.clip_epsilon,
            }
        metrics: dict[str, float] = {}
        failed = 0.0

        with progress_bar("tinker agent rl", cfg.max_steps) as advance:
            batches = iterate_batches(ctx.train_rows, cfg.batch_size, cfg.max_steps, ctx.seed)
            for step, batch in enumerate(batches, start=1):
                # Episodes: every turn sampled from the weights as they are now.
                with checkpoints.errors(f"sampling the episodes of step {step}"):
                    sampler = backend.wait(
                        client.save_weights_and_get_sampling_client(), "the current weights"
                    )
                    act = _sampler(ctx, sampler, tokenizer, cfg, step)
                    groups = play_groups(batch, cfg, act, verifier, tokenizer)
                metrics = step_metrics(groups) | {"train/lr": cfg.learning_rate}
                failed += metrics["train/failed_episodes"]

                # Update: one policy-gradient step on the episodes that carry a signal.
                learning = [
                    (episode, advantage)
                    for group in groups
                    for episode, advantage in zip(group, group_advantages(group), strict=True)
                    if advantage != 0.0 and any(episode.mask)
                ]
                if learning:
                    data = [episode_datum(episode, advantage) for episode, advantage in learning]
                    with checkpoints.errors(f"training step {step}"):
                        fwd = client.forward_backward(data, cfg.loss, loss_config)
                        opt = client.optim_step(types.AdamParams(learning_rate=cfg.learning_rate))
                        output = backend.wait(fwd, f"the result of step {step}")
                        backend.wait(opt, f"the optimizer step {step}")
                    if "loss:sum" in output.metrics:  # not every Tinker server reports it
                        trained = sum(sum(episode.mask) for episode, _ in learning)
                        metrics["train/loss"] = output.metrics["loss:sum"] / max(trained, 1)
                if is_save_step(step, cfg.save_every):
                    checkpoints.submit_save(step)
                    checkpoints.collect(step)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    ctx.log_store.log_metrics(metrics, step=step)
                validate_live(ctx, client, step)
                advance(reward=metrics["train/reward_mean"])

        final = checkpoints.save_final()
        return RunResult(
            run_id=ctx.run_id,
            status="completed",
            metrics=final_metrics(metrics, failed, cfg.max_steps),
            artifacts=final,
        )


def _sampler(ctx: RunContext, sampler: Any, tokenizer: Any, cfg: Any, step: int) -> Any:
    """``act`` for the episode runner: one sample per live episode, all requests in flight at
    once, each seeded by (run seed, step, request)."""
    from tinker import types

    requests = 0

    def act(episodes: list[Episode], budgets: list[int]) -> list[Action]:
        nonlocal requests
        futures = []
        for episode, budget in zip(episodes, budgets, strict=True):
            requests += 1
            params = types.SamplingParams(
                max_tokens=budget,
                temperature=cfg.temperature,
                stop=[tokenizer.eos_token_id],
                seed=ctx.seed * 1_000_003 + step * 1_009 + requests,
            )
            futures.append(sampler.sample(types.ModelInput.from_ints(episode.context), 1, params))
        actions = []
        for future in futures:
            (sequence,) = ctx.backend.wait(future, f"the turns of step {step}").sequences
            tokens = list(sequence.tokens)
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            actions.append(Action(text, tokens, list(sequence.logprobs or [])))
        return actions

    return act


def episode_datum(episode: Episode, advantage: float) -> Any:
    """The episode as one sequence; the advantage only on the tokens the model wrote."""
    import numpy as np
    from tinker import types

    tokens = episode.prompt_tokens + episode.completion_tokens
    pad = np.zeros(len(episode.prompt_tokens) - 1, np.float32)
    mask = np.asarray(episode.mask, np.float32)
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": np.asarray(tokens[1:], dtype=np.int64),
            "logprobs": np.concatenate([pad, np.asarray(episode.logprobs, np.float32) * mask]),
            "advantages": np.concatenate([pad, advantage * mask]),
        },
    )
