"""Agent RL on the tinker backend under the real SDK, against the Tinker-protocol test server:
episodes sampled turn by turn, one datum per episode with its advantage on the model's tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import metrics_lines, require

require("tinker", "pip install 'evsys[tinker]'", declared_by="EVSYS_REQUIRE_TINKER")
require("transformers", "pip install 'evsys[local]'", declared_by="EVSYS_REQUIRE_TINKER")

from tinker_server import TinkerTestServer, serving_tiny  # noqa: E402

from evsys.agents.episode import Episode  # noqa: E402
from evsys.backends.tinker.agent_rl import episode_datum  # noqa: E402
from evsys.compose.compose import compose_and_validate  # noqa: E402
from evsys.run.runner import run_arm  # noqa: E402
from evsys.verifiers import register_verifier_fn  # noqa: E402

pytestmark = pytest.mark.tinker


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinkerTestServer]:
    with serving_tiny(tmp_path_factory.mktemp("tinker-server")) as running:
        yield running


def test_an_episodes_advantage_lands_only_on_the_models_tokens() -> None:
    episode = Episode(
        task={},
        env=None,
        prompt_tokens=[1, 2, 3],
        completion_tokens=[10, 11, 20, 21, 22, 12],
        mask=[1, 1, 0, 0, 0, 1],
        logprobs=[-0.1, -0.2, 0.0, 0.0, 0.0, -0.3],
    )
    datum = episode_datum(episode, 0.5)
    inputs = {k: v.tolist() for k, v in datum.loss_fn_inputs.items()}
    assert datum.model_input.to_ints() == [1, 2, 3, 10, 11, 20, 21, 22]
    assert inputs["target_tokens"] == [2, 3, 10, 11, 20, 21, 22, 12]
    assert inputs["advantages"] == [0, 0, 0.5, 0.5, 0, 0, 0, 0.5]
    assert inputs["logprobs"] == pytest.approx([0, 0, -0.1, -0.2, 0, 0, 0, -0.3])


@pytest.mark.usefixtures("clean_registries")
def test_agent_rl_plays_multi_turn_episodes_on_tinker(
    server: TinkerTestServer, tmp_path: Path
) -> None:
    @register_verifier_fn("digit_share_of_last_turn")
    def digit_share(completion: str, expected: object) -> float:
        return sum(c.isdigit() for c in completion) / max(len(completion), 1)

    overrides = [
        "experiment=agent_guess_number",
        "backend=tinker",
        f"backend.params.base_url={server.url}",
        "model=tiny",
        "algorithm.params.max_steps=3",
        "algorithm.params.batch_size=2",
        "algorithm.params.group_size=2",
        "algorithm.params.max_turns=3",
        "algorithm.params.max_turn_tokens=6",
        "algorithm.params.max_tokens=18",
        "algorithm.params.learning_rate=1e-2",
        "algorithm.params.save_every=2",
        # A graded reward, so groups differ and every step trains (the game's own reward is
        # all but always 0 for an untrained tiny model).
        "algorithm.params.verifier={kind: digit_share_of_last_turn}",
    ]
    _, config = compose_and_validate(overrides)
    record = run_arm(config, tmp_path / "run", overrides=overrides).record
    assert record["status"] == "completed", record["error"]
    steps = [m for m in metrics_lines(tmp_path / "run") if "train/reward_mean" in m]
    assert [m["step"] for m in steps] == [1, 2, 3]
    for m in steps:
        assert 1 <= m["train/episode_turns"] <= 3 and 0 < m["train/model_tokens"] <= 18
        assert m["train/failed_episodes"] == 0 and 0.0 <= m["train/reward_mean"] <= 1.0
    assert any(m["train/reward_std"] > 0 and "train/loss" in m for m in steps)
    # The tiny model rarely ends a turn itself: its episodes run several turns.
    assert max(m["train/episode_turns"] for m in steps) > 1
    metrics = record["metrics"]
    assert metrics["train/steps"] == 3 and metrics["train/failed_episodes"] == 0
    assert metrics["train/final_episode_turns"] == steps[-1]["train/episode_turns"]
    assert record["artifacts"]["final_checkpoint"].startswith("tinker://")
