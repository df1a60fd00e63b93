"""The lifecycle of one arm on the mock backend, in process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import metrics_lines, run_in_process


def test_sft_trains_checkpoints_and_evaluates(workdir: Path) -> None:
    outcome = run_in_process(
        ["algorithm.params.max_steps=30", "algorithm.params.save_every=10"], workdir / "r"
    )
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    assert record["finished"] is True

    steps = [line for line in metrics_lines(workdir / "r") if "train/loss" in line]
    assert [s["step"] for s in steps] == list(range(1, 31))
    assert steps[-1]["train/loss"] < steps[0]["train/loss"]  # it learns

    checkpoints = sorted(p.name for p in (workdir / "r" / "checkpoints").iterdir())
    assert checkpoints == ["final", "step_10", "step_20", "step_30"]
    assert record["artifacts"]["final_checkpoint"] == str(workdir / "r" / "checkpoints" / "final")

    # Eval loads the final checkpoint and scores the held-out rows it never trained on.
    assert 0.3 < record["metrics"]["eval/exact_match"] <= 1.0
    predictions = (workdir / "r" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 40
    assert json.loads(predictions[0])["target"]


def test_training_beats_the_untrained_model(workdir: Path) -> None:
    trained = run_in_process(["algorithm.params.max_steps=40"], workdir / "a").record
    untrained = run_in_process(
        ["algorithm.params.max_steps=1", "algorithm.params.learning_rate=1e-9"], workdir / "b"
    ).record
    assert trained["metrics"]["eval/exact_match"] > untrained["metrics"]["eval/exact_match"] + 0.3


def test_runs_are_deterministic_by_seed(workdir: Path) -> None:
    first = run_in_process(["seed=3", "algorithm.params.max_steps=12"], workdir / "a").record[
        "metrics"
    ]
    again = run_in_process(["seed=3", "algorithm.params.max_steps=12"], workdir / "b").record[
        "metrics"
    ]
    other = run_in_process(["seed=4", "algorithm.params.max_steps=12"], workdir / "c").record[
        "metrics"
    ]
    assert first == again
    assert first != other


def test_rl_rewards_rise(workdir: Path) -> None:
    outcome = run_in_process(
        ["experiment=rl_arithmetic", "algorithm.params.max_steps=40"], workdir / "r"
    )
    assert outcome.record["status"] == "completed", outcome.record["error"]
    rewards = [
        m["train/reward_mean"] for m in metrics_lines(workdir / "r") if "train/reward_mean" in m
    ]
    assert len(rewards) == 40
    assert sum(rewards[-10:]) / 10 > sum(rewards[:10]) / 10
    assert "eval/exact_match" in outcome.record["metrics"]


def test_a_failing_run_is_recorded_with_its_error(workdir: Path) -> None:
    outcome = run_in_process(["backend.params.fail_at_step=3"], workdir / "r")
    record = json.loads((workdir / "r" / "run_result.json").read_text())
    assert record["status"] == "failed"
    assert record["error"] == "BackendError: mock backend failed at step 3 (fail_at_step=3)"
    assert "Traceback" in record["traceback"]
    assert not outcome.bad_input
    # what it logged before failing is kept
    assert [m["step"] for m in metrics_lines(workdir / "r")] == [1, 2]


def test_a_broken_data_line_fails_the_run_as_bad_input(workdir: Path) -> None:
    data = workdir / "train.jsonl"
    data.write_text('{"prompt": "a", "answer": "b"}\n{"prompt": oops}\n')
    outcome = run_in_process([f"data.path={data}", "data.eval_path=null"], workdir / "r")
    assert outcome.record["status"] == "failed"
    assert f"{data}:2" in outcome.record["error"]
    assert outcome.bad_input


def test_eval_failure_does_not_fail_the_run(workdir: Path) -> None:
    outcome = run_in_process(["data.eval_path=missing.jsonl"], workdir / "r")
    assert outcome.record["status"] == "completed"
    assert "missing.jsonl" in outcome.record["extras"]["eval_error"]
    assert not any(k.startswith("eval/") for k in outcome.record["metrics"])


def test_the_record_makes_the_run_reproducible(workdir: Path) -> None:
    overrides = ["seed=5", "algorithm.params.max_steps=2"]
    record = run_in_process(overrides, workdir / "r").record
    assert record["overrides"] == overrides
    assert record["config"]["seed"] == 5
    assert len(record["config_hash"]) == 16
    assert record["versions"]["hydra-core"].startswith("1.3")
    assert {"python", "evsys", "pydantic", "omegaconf"} <= set(record["versions"])
    same = run_in_process(overrides, workdir / "again").record
    assert same["config_hash"] == record["config_hash"]
    assert (
        run_in_process(["seed=6", "algorithm.params.max_steps=2"], workdir / "x").record[
            "config_hash"
        ]
        != record["config_hash"]
    )


def test_a_run_records_that_it_started_before_it_trains(workdir: Path) -> None:
    from evsys.compose.compose import compose_and_validate
    from evsys.protocols import RunResult
    from evsys.run.dependencies import ArmDependencies
    from evsys.run.runner import run_arm

    seen = []

    def train(config: Any, run_dir: Path) -> RunResult:  # what a reader sees mid-run
        seen.append(json.loads((run_dir / "run_result.json").read_text()))
        return RunResult(run_id="x", status="completed", metrics={"train/steps": 1.0})

    overrides = ["seed=3", "+metadata.notes.api_key=sk-secret"]
    _, config = compose_and_validate(overrides)
    record = run_arm(
        config, workdir / "r", overrides=overrides, dependencies=ArmDependencies(train=train)
    ).record
    (during,) = seen
    assert (during["status"], during["finished"], during["metrics"]) == ("running", False, {})
    assert during["config_hash"] == record["config_hash"]
    assert during["config"]["metadata"]["notes"]["api_key"] == "<redacted>"
    assert during["overrides"][1] == "+metadata.notes.api_key=<redacted>"
    assert isinstance(during["pid"], int) and during["host"] == record["host"]
    assert (record["status"], record["finished"]) == ("completed", True)


def test_secrets_never_reach_the_record(workdir: Path, clean_registries: None) -> None:
    secret = "tml-very-secret-key"
    outcome = run_in_process(
        ["+metadata.notes.api_key=" + secret, "algorithm.params.max_steps=1"], workdir / "r"
    )
    text = "\n".join(p.read_text() for p in (workdir / "r").rglob("*") if p.is_file())
    assert secret not in text
    assert outcome.record["config"]["metadata"]["notes"]["api_key"] == "<redacted>"
    assert outcome.record["config"]["eval"]["max_tokens"] == 64  # a token count is no secret


def test_teardown_runs_even_when_training_raises(workdir: Path, clean_registries: None) -> None:
    from evsys.backends.mock.backend import MockBackend
    from evsys.registry import register_backend

    torn_down = []

    @register_backend("mock_spy")
    class SpyBackend(MockBackend):
        def teardown(self, handles: dict[str, Any]) -> None:
            torn_down.append(True)

    from evsys.backends.mock.sft import MockSFT
    from evsys.registry import register_algorithm

    register_algorithm("sft", backend="mock_spy")(MockSFT)
    outcome = run_in_process(["backend=mock_spy", "backend.params.fail_at_step=1"], workdir / "r")
    assert outcome.record["status"] == "failed"
    assert torn_down == [True]


@pytest.mark.parametrize("store", ["jsonl", "tensorboard"])
def test_log_store_choice(workdir: Path, store: str) -> None:
    outcome = run_in_process([f"log_store={store}", "algorithm.params.max_steps=3"], workdir / "r")
    assert outcome.record["status"] == "completed", outcome.record["error"]
    expected = workdir / "r" / ("metrics.jsonl" if store == "jsonl" else "tensorboard")
    assert expected.exists()
