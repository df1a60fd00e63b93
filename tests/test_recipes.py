"""The chained recipes (combo, sdft) and distill on the mock backend, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, metrics_lines, run_in_process

from evsys.answers import extract_answer
from evsys.compose.compose import compose_and_validate
from evsys.errors import ConfigError

TRAIN = REPO / "data" / "tool_selection" / "train.jsonl"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A trained mock checkpoint: the starting point of sdft and the teacher of distill."""
    run_dir = tmp_path_factory.mktemp("teacher")
    record = run_in_process(["algorithm.params.max_steps=40"], run_dir).record
    assert record["metrics"]["eval/exact_match"] >= 0.7
    return record["artifacts"]["final_checkpoint"]


def test_combo_chains_phases_from_checkpoint_to_checkpoint(workdir: Path) -> None:
    phases = "[{kind: sft, params: {max_steps: 20}}, {kind: rl, params: {max_steps: 6}}]"
    record = run_in_process(
        ["algorithm=combo", f"+algorithm.params.phases={phases}"], workdir / "r"
    ).record
    assert record["status"] == "completed", record["error"]

    phase_dirs = workdir / "r" / "phases"
    assert sorted(p.name for p in phase_dirs.iterdir()) == ["0_sft", "1_rl"]
    final = phase_dirs / "1_rl" / "checkpoints" / "final"
    assert record["artifacts"]["final_checkpoint"] == str(final)
    # The RL phase started from the SFT phase's policy: it remembers what SFT taught.
    sft_policy = json.loads((phase_dirs / "0_sft/checkpoints/final/mock_policy.json").read_text())
    rl_policy = json.loads((final / "mock_policy.json").read_text())
    assert set(sft_policy["answers"]) <= set(rl_policy["answers"])

    metrics = record["metrics"]
    assert metrics["phase/0_sft/train/steps"] == 20 and metrics["phase/1_rl/train/steps"] == 6
    assert metrics["train/steps"] == 26
    assert "train/final_reward_mean" in metrics and "train/final_loss" not in metrics
    # One curve: the RL steps continue after the SFT steps.
    steps = [m["step"] for m in metrics_lines(workdir / "r") if "train/lr" in m]
    assert steps == list(range(1, 27))


def test_a_bad_phase_is_reported_with_its_path() -> None:
    phases = "[{kind: sft, params: {max_stepz: 2}}, {kind: sfd}]"
    with pytest.raises(ConfigError) as info:
        compose_and_validate(["algorithm=combo", f"+algorithm.params.phases={phases}"])
    paths = {p.path: p for p in info.value.problems}
    assert paths["algorithm.params.phases[0].params.max_stepz"].suggestion == "max_steps"
    assert paths["algorithm.params.phases[1].kind"].suggestion == "sft"


def test_sdft_learns_from_its_own_verified_samples(workdir: Path, teacher: str) -> None:
    record = run_in_process(
        [
            "algorithm=sdft",
            f"model.load_checkpoint_path={teacher}",
            "algorithm.params.rounds=2",
            "algorithm.params.max_steps=10",
        ],
        workdir / "r",
    ).record
    assert record["status"] == "completed", record["error"]
    metrics = record["metrics"]
    assert 0 < metrics["phase/0_sft/sdft/accept_rate"] < 1
    assert metrics["sdft/rounds"] == 2 and metrics["train/steps"] == 20

    # Every kept sample is a completion the verifier accepted: the row's own answer.
    samples = (workdir / "r/phases/0_sft/samples.jsonl").read_text().splitlines()
    assert len(samples) == metrics["phase/0_sft/sdft/accepted"]
    answers = {row["id"]: row["answer"] for row in map(json.loads, TRAIN.read_text().splitlines())}
    for sample in map(json.loads, samples):
        assert sample["messages"][-1]["role"] == "assistant"
        assert extract_answer(sample["messages"][-1]["content"]) == answers[sample["id"]]
    final = workdir / "r/phases/1_sft/checkpoints/final"
    assert record["artifacts"]["final_checkpoint"] == str(final)


def test_sdft_with_nothing_accepted_says_what_to_change(workdir: Path) -> None:
    record = run_in_process(["algorithm=sdft", "algorithm.params.rounds=1"], workdir / "r").record
    assert record["status"] == "failed"
    assert "accepted none of" in record["error"]
    assert "samples_per_prompt" in record["error"]


def test_distill_moves_the_student_towards_the_teacher(workdir: Path, teacher: str) -> None:
    common = ["algorithm=distill", "algorithm.params.teacher=mock"]
    record = run_in_process(
        [
            *common,
            f"algorithm.params.teacher_checkpoint={teacher}",
            "algorithm.params.max_steps=30",
            "algorithm.params.learning_rate=2e-4",
        ],
        workdir / "r",
    ).record
    assert record["status"] == "completed", record["error"]
    losses = [m["train/loss"] for m in metrics_lines(workdir / "r") if "train/loss" in m]
    assert losses[-1] < losses[0]
    assert record["metrics"]["eval/exact_match"] >= 0.5

    no_teacher = run_in_process(common, workdir / "s").record
    assert no_teacher["status"] == "failed"
    assert "teacher_checkpoint" in no_teacher["error"]


def test_a_phase_the_backend_cannot_run_is_refused_before_running() -> None:
    phases = "[{kind: sft}, {kind: distill, params: {teacher: x}}]"
    with pytest.raises(ConfigError) as info:
        compose_and_validate(
            ["algorithm=combo", "backend=tinker", f"+algorithm.params.phases={phases}"]
        )
    (problem,) = info.value.problems
    assert problem.path == "algorithm.params.phases[1].kind"
    assert "no implementation on backend 'tinker'" in problem.message
