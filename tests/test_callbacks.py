"""Callbacks on the mock backend: hooks in order with their arguments, early stopping, failures,
bad config. The local and tinker backends run the same callbacks in test_local_recipes.py and
test_tinker_backend.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, doc_block, metrics_lines, run_evsys, run_in_process

from evsys.callbacks import Stop
from evsys.registry import CALLBACKS, register_callback

VALIDATION = REPO / "data" / "tool_selection" / "validation"
VAL_METRIC = "val/tool_selection_val/exact_match"


def val_every(steps: int) -> str:
    return f"+metadata.benchmark=[{{path: '{VALIDATION}', tags: [val], run_every: {steps}}}]"


def callbacks(*entries: str) -> str:
    return f"callbacks=[{', '.join(entries)}]"


class Recorder:
    """Keeps every hook call, in order."""

    calls: list[tuple[Any, ...]] = []

    def on_train_begin(self) -> None:
        self.calls.append(("on_train_begin",))

    def on_step_end(self, step: int, metrics: dict[str, float]) -> None:
        self.calls.append(("on_step_end", step, metrics))

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        self.calls.append(("on_evaluate", step, metrics))

    def on_save(self, step: int, path: str) -> None:
        self.calls.append(("on_save", step, path))

    def on_train_end(self) -> None:
        self.calls.append(("on_train_end",))


@pytest.fixture
def recorder(clean_registries: None) -> type[Recorder]:
    Recorder.calls = []
    register_callback("recorder")(Recorder)
    return Recorder


# The hooks of 4 steps with `val` every 2 steps and a checkpoint every 3 (and the final one), in
# order: the same on every backend (test_local_callbacks, test_tinker_callbacks).
FOUR_STEPS_VALIDATED_EVERY_2_SAVED_EVERY_3 = [
    ("on_train_begin",),
    ("on_step_end", 1),
    ("on_evaluate", 2),
    ("on_step_end", 2),
    ("on_save", 3),
    ("on_step_end", 3),
    ("on_evaluate", 4),
    ("on_step_end", 4),
    ("on_save", 4),
    ("on_train_end",),
]


def hooks_of(calls: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each call as (hook, step): what the order tests compare."""
    return [call[:2] for call in calls]


def test_the_registry_of_callbacks_loads_from_its_entry_point_group() -> None:
    assert CALLBACKS.entry_point_group == "evsys.callbacks"
    assert "early_stopping" in CALLBACKS.names()


def test_hooks_are_called_in_order_with_the_steps_metrics(
    workdir: Path, recorder: type[Recorder]
) -> None:
    overrides = [
        "algorithm.params.max_steps=4",
        "algorithm.params.save_every=3",
        val_every(2),
        callbacks("{kind: recorder}"),
    ]
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]

    calls = recorder.calls
    assert hooks_of(calls) == FOUR_STEPS_VALIDATED_EVERY_2_SAVED_EVERY_3
    # Each step's metrics are what the run logged at that step, as metrics.jsonl has them.
    logged: dict[int, dict[str, float]] = {}
    for line in metrics_lines(workdir / "r"):
        logged.setdefault(line.pop("step"), {}).update(line)
    for _, step, metrics in (c for c in calls if c[0] == "on_step_end"):
        assert metrics == {
            k: v for k, v in logged[step].items() if k.startswith(("train/", "val/"))
        }
    for _, step, metrics in (c for c in calls if c[0] == "on_evaluate"):
        assert metrics == {k: v for k, v in logged[step].items() if k.startswith("val/")}
        assert VAL_METRIC in metrics
    saves = [c[2] for c in calls if c[0] == "on_save"]
    assert saves == [str(workdir / "r/checkpoints/step_3"), str(workdir / "r/checkpoints/final")]


def test_steps_continue_across_the_phases_of_a_combo(
    workdir: Path, recorder: type[Recorder]
) -> None:
    overrides = [
        "algorithm=combo",
        "+algorithm.params.phases=[{kind: sft, params: {max_steps: 2}}, "
        "{kind: rl, params: {max_steps: 3}}]",
        callbacks("{kind: recorder}"),
    ]
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    calls = hooks_of(recorder.calls)
    assert calls[0] == ("on_train_begin",) and calls[-1] == ("on_train_end",)
    assert [step for hook, step in calls[1:-1] if hook == "on_step_end"] == [1, 2, 3, 4, 5]
    assert [step for hook, step in calls[1:-1] if hook == "on_save"] == [2, 5]  # each final


def test_early_stopping_ends_a_run_whose_val_metric_stalls(workdir: Path) -> None:
    # A learning rate this small teaches the toy policy nothing: the val score stays put.
    stalled = ["algorithm.params.max_steps=40", "algorithm.params.learning_rate=1e-9"]
    watch = f"{{kind: early_stopping, params: {{metric: {VAL_METRIC}, patience: 2}}}}"
    record = run_in_process([*stalled, val_every(2), callbacks(watch)], workdir / "r").record

    assert record["status"] == "completed", record["error"]
    # Validated at 2 (the best), then 4 and 6 without improving: stopped after step 6.
    assert record["metrics"]["train/steps"] == 6
    assert record["extras"]["stopped_by"].startswith(f"early_stopping: {VAL_METRIC}")
    assert (workdir / "r/checkpoints/final").is_dir()
    assert max(line["step"] for line in metrics_lines(workdir / "r") if "train/loss" in line) == 6
    assert "eval/exact_match" in record["metrics"]  # eval scores the final checkpoint as usual

    # The same run without the callback trains all its steps.
    plain = run_in_process([*stalled, val_every(2)], workdir / "plain").record
    assert plain["metrics"]["train/steps"] == 40


def test_early_stopping_lets_an_improving_run_finish(workdir: Path) -> None:
    watch = f"{{kind: early_stopping, params: {{metric: {VAL_METRIC}, patience: 5}}}}"
    overrides = ["algorithm.params.max_steps=8", val_every(2), callbacks(watch)]
    record = run_in_process(overrides, workdir / "r").record
    assert record["metrics"]["train/steps"] == 8
    assert "stopped_by" not in record["extras"]


class Exploding:
    on_error = "warn"  # what the class declares; callbacks[i].on_error overrides it

    def on_step_end(self, step: int, metrics: dict[str, float]) -> None:
        if step == 2:
            raise ValueError("the dashboard is down")


@pytest.mark.parametrize(
    ("entry", "fails"),
    [
        ("{kind: exploding}", False),
        ("{kind: exploding, on_error: fail}", True),
        ("{kind: exploding, on_error: warn}", False),
    ],
)
def test_a_failing_callback_fails_the_run_or_warns_as_declared(
    workdir: Path, clean_registries: None, entry: str, fails: bool
) -> None:
    register_callback("exploding")(Exploding)
    overrides = ["algorithm.params.max_steps=4", callbacks(entry)]
    record = run_in_process(overrides, workdir / "r").record
    expected = "callback 'exploding' (callbacks[0]) failed in on_step_end at step 2: ValueError"
    if fails:
        assert record["status"] == "failed"
        assert record["error_type"] == "CallbackError"
        assert expected in record["error"] and "the dashboard is down" in record["error"]
    else:
        assert record["status"] == "completed", record["error"]
        assert record["metrics"]["train/steps"] == 4
        assert record["extras"]["callback_0_exploding_error"].startswith(expected)


def test_a_callback_that_asks_to_stop_ends_training_at_that_step(
    workdir: Path, clean_registries: None
) -> None:
    @register_callback("stop_at_three")
    class StopAtThree:
        def on_step_end(self, step: int, metrics: dict[str, float]) -> Stop | None:
            return Stop("enough") if step == 3 else None

    for recipe in ("sft", "rl"):
        overrides = [f"algorithm={recipe}", "algorithm.params.max_steps=10"]
        if recipe == "rl":
            overrides.append("data=arithmetic")
        run_dir = workdir / recipe
        record = run_in_process([*overrides, callbacks("{kind: stop_at_three}")], run_dir).record
        assert record["status"] == "completed", record["error"]
        assert record["metrics"]["train/steps"] == 3
        assert record["extras"]["stopped_by"] == "stop_at_three: enough"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{kind: early_stoping}", "did you mean 'early_stopping'"),
        (f"{{kind: early_stopping, params: {{metric: {VAL_METRIC}, patiense: 2}}}}", "patiense"),
        ("{kind: early_stopping, params: {metric: eval/exact_match}}", "not a validation metric"),
        (f"{{kind: early_stopping, params: {{metric: {VAL_METRIC}}}}}", "validates nothing"),
        (f"{{kind: early_stopping, params: {{metric: {VAL_METRIC}}}, on_error: maybe}}", "'warn'"),
    ],
)
def test_bad_callback_config_is_refused_before_anything_runs(
    workdir: Path, entry: str, message: str
) -> None:
    result = run_evsys(callbacks(entry), "hydra.run.dir=out", cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "callbacks[0]" in output and message in output
    assert "Traceback" not in output
    assert not (workdir / "out" / "run_result.json").exists()


def test_an_unknown_val_metric_is_refused_with_the_ones_the_run_logs(workdir: Path) -> None:
    watch = "{kind: early_stopping, params: {metric: val/tool_selection_val/exact_matc}}"
    result = run_evsys("validate", val_every(2), callbacks(watch), cwd=workdir, module=False)
    assert result.returncode == 2
    assert f"did you mean '{VAL_METRIC}'" in result.stdout + result.stderr


def test_the_record_keeps_the_callbacks_of_the_run(workdir: Path) -> None:
    watch = f"{{kind: early_stopping, params: {{metric: {VAL_METRIC}}}}}"
    overrides = ["algorithm.params.max_steps=2", val_every(2), callbacks(watch)]
    run_in_process(overrides, workdir / "r")
    config = json.loads((workdir / "r/run_result.json").read_text())["config"]
    assert config["callbacks"] == [
        {
            "kind": "early_stopping",
            "params": {"metric": VAL_METRIC},
            "on_error": None,
        }
    ]


def test_the_readme_callback_runs_as_written(workdir: Path, clean_registries: None) -> None:
    exec(compile(doc_block("# Callbacks"), "<docs>", "exec"), {})
    overrides = [
        "algorithm.params.max_steps=5",
        "callbacks=[{kind: loss_ceiling, params: {ceiling: 0.1}}]",
    ]
    record = run_in_process(overrides, workdir / "r").record
    assert record["metrics"]["train/steps"] == 1
    assert record["extras"]["stopped_by"].startswith("loss_ceiling: train/loss above 0.1")
