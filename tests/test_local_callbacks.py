"""Callbacks on the local backend (bridged to TRL's TrainerCallback) with the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, metrics_lines, require, run_in_process  # noqa: E402

require("trl", "pip install 'evsys[local]'")
require("peft", "pip install 'evsys[local]'")

from test_callbacks import (  # noqa: E402
    FOUR_STEPS_VALIDATED_EVERY_2_SAVED_EVERY_3,
    Recorder,
    hooks_of,
)

from evsys.registry import register_callback  # noqa: E402

LOCAL = ["backend=local", "model=tiny", "eval.max_tokens=8", "eval.n_samples=4"]
VALIDATION = REPO / "data" / "tool_selection" / "validation"
VAL_METRIC = "val/tool_selection_val/exact_match"


def val_every(steps: int) -> str:
    return (
        f"+metadata.benchmark=[{{path: '{VALIDATION}', tags: [val], run_every: {steps}, "
        "metrics: [{kind: exact_match}]}]"
    )


@pytest.fixture
def recorder(clean_registries: None) -> type[Recorder]:
    Recorder.calls = []
    register_callback("recorder")(Recorder)
    return Recorder


def test_trl_steps_call_the_hooks_in_order(workdir: Path, recorder: type[Recorder]) -> None:
    # log_every=2: odd steps end at TRL's on_step_end (nothing logged), even ones at its on_log.
    overrides = [
        *LOCAL,
        "algorithm.params.max_steps=4",
        "algorithm.params.log_every=2",
        "algorithm.params.save_every=3",
        "algorithm.params.learning_rate=5e-3",
        val_every(2),
        "callbacks=[{kind: recorder}]",
    ]
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]

    calls = recorder.calls
    assert hooks_of(calls) == FOUR_STEPS_VALIDATED_EVERY_2_SAVED_EVERY_3
    logged: dict[int, dict[str, Any]] = {}
    for line in metrics_lines(workdir / "r"):
        logged.setdefault(line.pop("step"), {}).update(line)
    ends = {call[1]: call[2] for call in calls if call[0] == "on_step_end"}
    assert ends[1] == {} and ends[3] == {}  # steps TRL does not log
    for step in (2, 4):
        assert ends[step]["train/loss"] == logged[step]["train/loss"]
        assert ends[step][VAL_METRIC] == logged[step][VAL_METRIC]
    saves = [call[2] for call in calls if call[0] == "on_save"]
    assert saves == [str(workdir / "r/checkpoints/step_3"), str(workdir / "r/checkpoints/final")]


def test_early_stopping_sets_trls_should_training_stop(workdir: Path) -> None:
    # The tiny random model scores 0 on every validation: the metric stalls from the start.
    watch = f"{{kind: early_stopping, params: {{metric: {VAL_METRIC}, patience: 1}}}}"
    overrides = [
        *LOCAL,
        "algorithm.params.max_steps=8",
        val_every(1),
        f"callbacks=[{watch}]",
    ]
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    assert record["metrics"]["train/steps"] == 2  # validated at 1, no better at 2: stopped
    assert record["extras"]["stopped_by"].startswith("early_stopping:")
    assert (workdir / "r/checkpoints/final/adapter_model.safetensors").is_file()


def test_a_failing_callback_fails_a_local_run_naming_it(
    workdir: Path, clean_registries: None
) -> None:
    @register_callback("exploding")
    class Exploding:
        def on_step_end(self, step: int, metrics: dict[str, float]) -> None:
            raise RuntimeError("no route to the dashboard")

    overrides = [*LOCAL, "algorithm.params.max_steps=3", "callbacks=[{kind: exploding}]"]
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "failed"
    assert "callback 'exploding' (callbacks[0]) failed in on_step_end at step 1" in record["error"]
