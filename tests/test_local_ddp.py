"""Data-parallel local training: two ranks on CPU (gloo), as a GPU machine runs one per GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require  # noqa: E402

require("trl", "pip install 'evsys[local]'")
require("peft", "pip install 'evsys[local]'")

from evsys.backends.local.inference import LocalInferenceClient  # noqa: E402
from evsys.compose.compose import compose_and_validate  # noqa: E402
from evsys.run.runner import run_arm  # noqa: E402

LOCAL = ["backend=local", "model=tiny", "eval.max_tokens=8", "eval.n_samples=4"]


@pytest.mark.slow
def test_two_ranks_train_one_adapter_and_rank_0_records_it(workdir: Path) -> None:
    overrides = [
        *LOCAL,
        "backend.params.num_processes=2",
        "algorithm.params.max_steps=4",
        "algorithm.params.batch_size=4",
        "algorithm.params.learning_rate=5e-3",
        "algorithm.params.save_every=2",
    ]
    _, config = compose_and_validate(overrides)
    record = run_arm(config, workdir / "r", overrides=overrides).record
    assert record["status"] == "completed", record["error"]
    assert record["metrics"]["train/world_size"] == 2

    # Rank 0 alone logged: each step once, and the loss fell.
    lines = [json.loads(x) for x in (workdir / "r/metrics.jsonl").read_text().splitlines()]
    steps = [m for m in lines if "train/loss" in m]
    assert [m["step"] for m in steps] == [1, 2, 3, 4]
    assert steps[-1]["train/loss"] < steps[0]["train/loss"]
    # The ranks' losses add up to one process's on the same global batch (each rank's share of
    # the token-averaged loss is scaled back up, as Trainer.compute_loss does).
    single = [o for o in overrides if not o.startswith("backend.params.num_processes")]
    _, one_process = compose_and_validate(single)
    assert run_arm(one_process, workdir / "one", overrides=single).record["status"] == "completed"
    alone = [json.loads(x) for x in (workdir / "one/metrics.jsonl").read_text().splitlines()]
    first_alone = next(m["train/loss"] for m in alone if "train/loss" in m)
    assert steps[0]["train/loss"] == pytest.approx(first_alone, rel=0.02)

    checkpoints = sorted(p.name for p in (workdir / "r/checkpoints").iterdir())
    assert checkpoints == ["final", "step_2", "step_4"]
    client = LocalInferenceClient(
        model="evsys/tiny-llama", checkpoint=record["artifacts"]["final_checkpoint"]
    )
    assert isinstance(client.generate(prompt="Hi", max_tokens=4), str)
    assert 0.0 <= record["metrics"]["eval/exact_match"] <= 1.0  # eval ran in the arm's process


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_the_ranks_is_named(workdir: Path) -> None:
    overrides = [*LOCAL, "backend.params.num_processes=2", "algorithm.params.batch_size=3"]
    _, config = compose_and_validate(overrides)
    record = run_arm(config, workdir / "r", overrides=overrides).record
    assert record["status"] == "failed"
    assert "does not split evenly over backend.params.num_processes=2" in record["error"]
    assert (workdir / "r/ddp/ranks.log").is_file()
