"""combo, sdft and distill on the local backend with the tiny model, and the in-loop val curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, metrics_lines, require, run_in_process  # noqa: E402

require("trl", "pip install 'evsys[local]'")
require("peft", "pip install 'evsys[local]'")

from evsys.backends.local.inference import LocalInferenceClient  # noqa: E402
from evsys.run.runner import ArmOutcome  # noqa: E402
from evsys.verifiers import register_verifier_fn  # noqa: E402

TINY = "evsys/tiny-llama"
LOCAL = ["backend=local", "model=tiny", "eval.max_tokens=8", "eval.n_samples=4"]
VALIDATION = REPO / "data" / "tool_selection" / "validation"


@pytest.fixture(scope="module")
def combo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArmOutcome, Path]:
    """SFT (4 steps) then RL (2 steps), a val benchmark scored every 2 steps of each phase."""
    run_dir = tmp_path_factory.mktemp("local-combo") / "run"
    phases = (
        "[{kind: sft, params: {max_steps: 4, learning_rate: 5e-3}},"
        " {kind: rl, params: {max_steps: 2, batch_size: 2, group_size: 2, max_tokens: 8}}]"
    )
    val = f"[{{path: '{VALIDATION}', tags: [val], run_every: 2, metrics: [{{kind: exact_match}}]}}]"
    overrides = [
        *LOCAL,
        "algorithm=combo",
        f"+algorithm.params.phases={phases}",
        f"+metadata.benchmark={val}",
    ]
    return run_in_process(overrides, run_dir), run_dir


def test_combo_rl_starts_from_the_sft_adapter(combo_run: tuple[ArmOutcome, Path]) -> None:
    outcome, run_dir = combo_run
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    sft_final = run_dir / "phases/0_sft/checkpoints/final"
    rl_final = run_dir / "phases/1_rl/checkpoints/final"
    assert record["artifacts"]["final_checkpoint"] == str(rl_final)
    assert record["metrics"]["train/steps"] == 6

    # RL went on from the adapter SFT left, not from a fresh one (whose lora_B are all zero).
    from safetensors.torch import load_file

    sft_weights = load_file(sft_final / "adapter_model.safetensors")
    rl_weights = load_file(rl_final / "adapter_model.safetensors")
    assert sft_weights.keys() == rl_weights.keys()
    trained_b = [k for k in rl_weights if "lora_B" in k and rl_weights[k].abs().sum() > 0]
    assert trained_b

    # The final adapter reloads for inference.
    client = LocalInferenceClient(model=TINY, checkpoint=str(rl_final))
    assert isinstance(client.generate(prompt="What is 2 + 2?", max_tokens=4), str)


def test_the_val_curve_is_written_from_the_live_model(combo_run: tuple[ArmOutcome, Path]) -> None:
    outcome, run_dir = combo_run
    key = "val/tool_selection_val/exact_match"
    curve = [m["step"] for m in metrics_lines(run_dir) if key in m]
    assert curve == [2, 4, 6]  # SFT steps 2 and 4, then RL's step 2 continuing the run's steps
    assert 0.0 <= outcome.record["metrics"][key] <= 1.0


def test_sdft_trains_on_the_samples_its_verifier_keeps(
    workdir: Path, clean_registries: None
) -> None:
    @register_verifier_fn("has_letters")
    def has_letters(completion: str, expected: object) -> float:
        return float(any(c.isalpha() for c in completion))

    overrides = [
        *LOCAL,
        "algorithm=sdft",
        "algorithm.params.verifier.kind=has_letters",
        "algorithm.params.samples_per_prompt=2",
        "algorithm.params.max_tokens=8",
        "algorithm.params.max_steps=3",
        "algorithm.params.learning_rate=5e-3",
        "algorithm.params.rounds=2",
        "data.limit=8",
    ]
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    samples = (workdir / "r/phases/0_sft/samples.jsonl").read_text().splitlines()
    assert 0 < len(samples) == record["metrics"]["phase/0_sft/sdft/accepted"] <= 8
    for sample in map(json.loads, samples):
        assert any(c.isalpha() for c in sample["messages"][-1]["content"])
    losses = [m["train/loss"] for m in metrics_lines(workdir / "r") if "train/loss" in m]
    assert len(losses) == 6  # two rounds of three SFT steps
    assert (workdir / "r/phases/1_sft/checkpoints/final/adapter_model.safetensors").is_file()


def test_distill_pulls_the_student_towards_its_teacher(
    workdir: Path, combo_run: tuple[ArmOutcome, Path]
) -> None:
    _, combo_dir = combo_run
    teacher_adapter = combo_dir / "phases/0_sft/checkpoints/final"
    overrides = [
        *LOCAL,
        "algorithm=distill",
        f"algorithm.params.teacher={TINY}",
        f"algorithm.params.teacher_checkpoint={teacher_adapter}",
        "algorithm.params.max_steps=4",
        "algorithm.params.max_tokens=8",
        "algorithm.params.learning_rate=5e-3",
    ]
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    losses = [m["train/loss"] for m in metrics_lines(workdir / "r") if "train/loss" in m]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert (workdir / "r/checkpoints/final/adapter_model.safetensors").is_file()
