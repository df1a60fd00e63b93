"""Multi-turn agent RL on the mock backend: environments, tools, the episode runner's limits and
failures, and reward rising in both bundled environments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import metrics_lines, run_in_process

from evsys.agents import Environment, StepResult
from evsys.agents.environments.calculator import CalculatorEnv, calculate
from evsys.agents.environments.guess_number import GuessNumberEnv
from evsys.agents.episode import Action, Episode, run_episodes
from evsys.agents.rollouts import group_advantages
from evsys.agents.tools import call_tool, find_tool_call
from evsys.compose.compose import compose_and_validate
from evsys.config import Strict
from evsys.errors import ConfigError
from evsys.registry import ENVIRONMENTS, register_environment


def scripted(*turns: str):
    """``act`` that writes ``turns`` in order, the same in every episode."""

    def act(episodes: list[Episode], budgets: list[int]) -> list[Action]:
        return [Action(turns[min(e.turns, len(turns) - 1)]) for e in episodes]

    return act


# -- environments and tools ---------------------------------------------------------------------


def test_the_bundled_environments_are_registered_and_satisfy_the_protocol() -> None:
    assert {"calculator", "guess_number"} <= set(ENVIRONMENTS.names())
    assert isinstance(CalculatorEnv(), Environment)
    assert isinstance(GuessNumberEnv(), Environment)


def test_the_calculator_tool_evaluates_arithmetic_and_nothing_else() -> None:
    assert calculate("12 * (3 + 4)") == "84"
    assert calculate("7 / 2") == "3.5"
    for hostile in ["__import__('os').system('true')", "9 ** 9 ** 9", "x + 1", "1 +"]:
        with pytest.raises(ValueError):
            calculate(hostile)
    assert find_tool_call("let me see <tool>calculator: 2 + 3</tool>") == ("calculator", "2 + 3")
    assert find_tool_call("<answer>5</answer>") is None
    # A tool's mistakes are the model's to read, not errors of the run.
    env = CalculatorEnv()
    assert call_tool(env.tools, "<tool>calculator: 1/0</tool>").observation.startswith("error")
    assert "no tool named" in call_tool(env.tools, "<tool>search: x</tool>").observation


def test_a_calculator_episode_calls_the_tool_then_answers() -> None:
    task = {"id": "t", "prompt": "What is 43 + 9?", "answer": "52"}
    (episode,) = run_episodes(
        [task],
        CalculatorEnv,
        scripted("<tool>calculator: 43 + 9</tool>", "<answer>52</answer>"),
        max_turns=4,
        max_tokens=64,
    )
    assert (episode.status, episode.reward, episode.turns) == ("done", 1.0, 2)
    roles = [m["role"] for m in episode.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert episode.messages[3]["content"] == "52"


def test_the_guessing_game_says_higher_or_lower() -> None:
    env = GuessNumberEnv()
    env.reset({"secret": 37})
    assert env.step("<guess>50</guess>").observation == "Lower."
    assert env.step("<guess>20</guess>").observation == "Higher."
    assert env.step("a number").observation.startswith("Reply with")
    done = env.step("<guess>37</guess>")
    assert done.done and done.reward == 1.0
    # A task without a secret gets one from its id, the same every time.
    first, second = GuessNumberEnv(), GuessNumberEnv()
    first.reset({"id": "x"}), second.reset({"id": "x"})
    assert first.secret == second.secret and 1 <= first.secret <= 100


# -- the episode runner's limits and failures ---------------------------------------------------


def test_max_turns_and_max_tokens_end_an_episode_truncated() -> None:
    task = {"secret": 99}
    (by_turns,) = run_episodes(
        [task], GuessNumberEnv, scripted("<guess>1</guess>"), max_turns=3, max_tokens=100
    )
    assert (by_turns.status, by_turns.turns, by_turns.reward) == ("truncated", 3, 0.0)

    budgets: list[int] = []

    def wordy(episodes: list[Episode], given: list[int]) -> list[Action]:
        budgets.extend(given)
        return [Action(" ".join(["maybe"] * b)) for b in given]  # the mock counts words

    (by_tokens,) = run_episodes(
        [task], GuessNumberEnv, wordy, max_turns=10, max_tokens=6, max_turn_tokens=4
    )
    # A turn may write max_turn_tokens, and no more than what is left of the episode's budget.
    assert budgets == [4, 2]
    assert (by_tokens.status, by_tokens.turns, by_tokens.model_tokens) == ("truncated", 2, 6)


class FlakyEnv:
    """Fails at reset for tasks marked so, at its second step for the others."""

    class Config(Strict):
        pass

    tools = ()

    def __init__(self, **params: Any):
        self.turns = 0

    def reset(self, task: dict[str, Any]) -> list[dict[str, str]]:
        if task.get("broken"):
            raise RuntimeError("no such task")
        return [{"role": "user", "content": "Say go."}]

    def step(self, action: str) -> StepResult:
        self.turns += 1
        if self.turns == 2:
            raise ConnectionError("the environment went away")
        return StepResult("Again.", reward=0.5)

    def candidate_actions(self) -> dict[str, str]:
        return {"go": "go", "stop": "stop"}


def test_an_environment_error_fails_only_its_episode(caplog: pytest.LogCaptureFixture) -> None:
    tasks = [{"id": "ok"}, {"id": "bad", "broken": True}]
    ok, bad = run_episodes(tasks, FlakyEnv, scripted("go"), max_turns=4, max_tokens=50)
    assert (ok.status, ok.reward, ok.turns) == ("failed", 0.0, 2)
    assert "ConnectionError: the environment went away" in ok.error
    assert (bad.status, bad.turns) == ("failed", 0) and "no such task" in bad.error
    assert "episode of task 'bad' failed" in caplog.text
    # A failed episode teaches nothing and does not move its group's mean.
    done = Episode(task={}, env=None, status="done", reward=1.0)
    assert group_advantages([ok, done, Episode(task={}, env=None, status="done")]) == [0, 0.5, -0.5]


# -- the recipe on the mock backend -------------------------------------------------------------


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.parametrize("experiment", ["agent_calculator", "agent_guess_number"])
def test_reward_rises_over_a_few_dozen_steps(experiment: str, workdir: Path) -> None:
    record = run_in_process(
        [f"experiment={experiment}", "algorithm.params.max_steps=30"], workdir / "r"
    ).record
    assert record["status"] == "completed", record["error"]
    steps = [m for m in metrics_lines(workdir / "r") if "train/reward_mean" in m]
    assert [m["step"] for m in steps] == list(range(1, 31))
    rewards = [m["train/reward_mean"] for m in steps]
    assert mean(rewards[-5:]) > mean(rewards[:3]) + 0.2 and mean(rewards[-5:]) >= 0.8
    for m in steps:
        assert m["train/failed_episodes"] == 0 and m["train/episode_turns"] >= 1
    metrics = record["metrics"]
    assert metrics["train/final_reward_mean"] == rewards[-1]
    assert metrics["train/final_episode_turns"] == steps[-1]["train/episode_turns"]
    assert metrics["train/steps"] == 30 and metrics["train/failed_episodes"] == 0
    policy = json.loads((workdir / "r/checkpoints/final/mock_agent_policy.json").read_text())
    assert policy["preferences"]


def test_the_calculator_policy_learns_to_call_the_tool_first(workdir: Path) -> None:
    run_in_process(["experiment=agent_calculator"], workdir / "r")
    policy = json.loads((workdir / "r/checkpoints/final/mock_agent_policy.json").read_text())
    prefs = policy["preferences"]
    assert prefs["0|call_calculator"] > prefs["0|answer"]
    assert prefs["1|answer"] > prefs["1|call_calculator"]


@pytest.mark.usefixtures("clean_registries")
def test_failed_episodes_are_counted_never_the_run(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    register_environment("flaky")(FlakyEnv)
    overrides = [
        "algorithm=agent_rl",
        "eval=none",
        "data.source_kind=in_memory",
        "data.transforms=[]",
        "+data.rows=[{id: a}, {id: b, broken: true}]",
        "algorithm.params.environment.kind=flaky",
        "algorithm.params.max_steps=3",
        "algorithm.params.batch_size=2",
        "algorithm.params.group_size=2",
    ]
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    steps = [m for m in metrics_lines(workdir / "r") if "train/failed_episodes" in m]
    assert [m["train/failed_episodes"] for m in steps] == [4.0, 4.0, 4.0]
    assert record["metrics"]["train/failed_episodes"] == 12
    assert caplog.text.count("failed in") == 12


# -- validation ---------------------------------------------------------------------------------


def test_a_bad_environment_is_refused_before_anything_runs() -> None:
    with pytest.raises(ConfigError) as info:
        compose_and_validate(
            [
                "algorithm=agent_rl",
                "algorithm.params.environment.kind=calculater",
                "algorithm.params.max_turns=0",
            ]
        )
    paths = {p.path: p for p in info.value.problems}
    assert paths["algorithm.params.environment.kind"].suggestion == "calculator"
    assert "algorithm.params.max_turns" in paths
    with pytest.raises(ConfigError) as info:
        compose_and_validate(
            [
                "algorithm=agent_rl",
                "algorithm.params.environment={kind: guess_number, params: {low: 9, high: 1}}",
            ]
        )
    (problem,) = info.value.problems
    assert problem.path == "algorithm.params.environment.params"
    assert "above high" in problem.message


def test_every_backend_runs_agent_rl_and_declares_its_metrics() -> None:
    from evsys.checks import recipe_metrics
    from evsys.registry import backends_supporting

    assert backends_supporting("agent_rl") == ["local", "mock", "tinker"]
    for backend in ("mock", "local", "tinker"):
        names = recipe_metrics("agent_rl", {}, backend)
        assert {"train/final_reward_mean", "train/failed_episodes"} <= set(names)
    _, config = compose_and_validate(
        ["experiment=agent_guess_number", "metadata.success_metric=train/final_episode_turns"]
    )
    assert config.algorithm.kind == "agent_rl"
