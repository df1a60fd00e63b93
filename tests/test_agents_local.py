"""Agent RL with real tokens: the mask over a rendered episode (the tiny model's chat template),
and the local backend's loop end to end (TRL's GRPOTrainer with evsys's episodes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import metrics_lines, require, run_in_process

require("transformers", "pip install 'evsys[local]'")

from evsys.agents.environments.calculator import CalculatorEnv  # noqa: E402
from evsys.agents.episode import Action, Episode, run_episodes  # noqa: E402

TASK = {"id": "t", "prompt": "What is 43 + 9?", "answer": "52"}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from evsys.backends.local.models import TINY_LLAMA, resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(TINY_LLAMA))


def sampled(tokenizer: Any, turns: list[str], *, end: bool):
    """``act`` that 'samples' ``turns`` as tokens, with the end token or cut off before it."""

    def act(episodes: list[Episode], budgets: list[int]) -> list[Action]:
        out = []
        for episode in episodes:
            text = turns[episode.turns]
            tokens = tokenizer.encode(text, add_special_tokens=False)
            out.append(Action(text, tokens + [tokenizer.eos_token_id] * end, [-0.5] * 99))
        return out

    return act


@pytest.mark.parametrize("end", [True, False], ids=["ends-its-turns", "cut-off"])
def test_only_the_models_tokens_are_trained(tokenizer: Any, end: bool) -> None:
    turns = ["<tool>calculator: 43 + 9</tool>", "<answer>52</answer>"]
    (episode,) = run_episodes(
        [TASK],
        CalculatorEnv,
        sampled(tokenizer, turns, end=end),
        max_turns=4,
        max_tokens=100,
        tokenizer=tokenizer,
    )
    assert episode.status == "done" and episode.turns == 2
    completion, mask = episode.completion_tokens, episode.mask
    assert len(mask) == len(completion) == len(episode.logprobs)

    # The tokens are the conversation as the template renders it, up to the last sampled token
    # (what the template adds after the episode's end is not part of it): nothing lost.
    rendered = tokenizer.apply_chat_template(episode.messages, tokenize=True, return_dict=True)
    closing = tokenizer.encode("<|im_end|>\n", add_special_tokens=False)[end:]
    assert episode.context + closing == list(rendered["input_ids"])

    # 1 exactly on the sampled tokens, in order; 0 on the tool result, the tool's turn, headers.
    trained = [t for t, m in zip(completion, mask, strict=True) if m]
    actions = [tokenizer.encode(t, add_special_tokens=False) for t in turns]
    ends = [tokenizer.eos_token_id] * end
    assert trained == actions[0] + ends + actions[1] + ends
    masked = tokenizer.decode([t for t, m in zip(completion, mask, strict=True) if not m])
    assert "tool\n52" in masked and "assistant" in masked
    assert "calculator: 43" not in masked
    # Sampler logprobs are kept on the model's tokens only.
    assert [lp for lp, m in zip(episode.logprobs, mask, strict=True) if not m] == [0.0] * (
        len(mask) - sum(mask)
    )


@pytest.mark.slow
def test_local_agent_rl_runs_episodes_through_trl_with_the_env_mask(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two GRPO steps of the tiny model on calculator episodes of up to 3 turns of 6 tokens."""
    require("trl", "pip install 'evsys[local]'")
    from evsys.backends.local import agent_rl

    rollouts: list[dict[str, Any]] = []
    real = agent_rl._trl_rollout

    def spy(episodes: list[Episode], tokenizer: Any) -> dict[str, Any]:
        rollouts.append(out := real(episodes, tokenizer))
        return out

    monkeypatch.setattr(agent_rl, "_trl_rollout", spy)
    record = run_in_process(
        [
            "experiment=agent_calculator",
            "backend=local",
            "model=tiny",
            "algorithm.params.max_steps=2",
            "algorithm.params.batch_size=2",
            "algorithm.params.group_size=2",
            "algorithm.params.max_turns=3",
            "algorithm.params.max_turn_tokens=6",
            "algorithm.params.max_tokens=18",
            "algorithm.params.learning_rate=1e-3",
        ],
        workdir / "r",
    ).record
    assert record["status"] == "completed", record["error"]
    assert len(rollouts) == 2 and all(len(r["prompt_ids"]) == 4 for r in rollouts)
    for rollout in rollouts:
        for ids, mask in zip(rollout["completion_ids"], rollout["env_mask"], strict=True):
            assert len(ids) == len(mask) and sum(mask) <= 18
    # Episodes went on past their first turn, and their observations were masked.
    assert any(0 in mask for r in rollouts for mask in r["env_mask"])

    steps = [m for m in metrics_lines(workdir / "r") if "train/reward_mean" in m]
    assert [m["step"] for m in steps] == [1, 2]
    for m, rollout in zip(steps, rollouts, strict=True):
        model_tokens = [sum(mask) for mask in rollout["env_mask"]]
        # TRL counted only the unmasked tokens: its completion length is the model's own.
        assert m["train/completion_length"] == pytest.approx(sum(model_tokens) / 4)
        assert m["train/model_tokens"] == pytest.approx(sum(model_tokens) / 4)
        assert 1 <= m["train/episode_turns"] <= 3 and m["train/failed_episodes"] == 0
        assert 0.0 <= m["train/reward_mean"] <= 1.0
    metrics = record["metrics"]
    assert metrics["train/steps"] == 2 and metrics["train/failed_episodes"] == 0
    assert metrics["train/final_reward_mean"] == steps[-1]["train/reward_mean"]
    assert (workdir / "r/checkpoints/final/adapter_model.safetensors").is_file()
