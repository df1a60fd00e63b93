"""Callbacks on the tinker backend, called by its loops, against the Tinker-protocol test server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, require  # noqa: E402

require("tinker", "pip install 'evsys[tinker]'", declared_by="EVSYS_REQUIRE_TINKER")
require("transformers", "pip install 'evsys[local]'", declared_by="EVSYS_REQUIRE_TINKER")

from test_callbacks import (  # noqa: E402
    FOUR_STEPS_VALIDATED_EVERY_2_SAVED_EVERY_3,
    Recorder,
    hooks_of,
)
from tinker_server import TinkerTestServer, serving_tiny  # noqa: E402

from evsys.compose.compose import compose_and_validate  # noqa: E402
from evsys.registry import register_callback  # noqa: E402
from evsys.run.runner import ArmOutcome, run_arm  # noqa: E402

pytestmark = pytest.mark.tinker

VALIDATION = REPO / "data" / "tool_selection" / "validation"
VAL_METRIC = "val/tool_selection_val/exact_match"
VAL_EVERY_2 = (
    f"+metadata.benchmark=[{{path: '{VALIDATION}', tags: [val], run_every: 2, "
    "metrics: [{kind: exact_match}]}]"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinkerTestServer]:
    with serving_tiny(tmp_path_factory.mktemp("tinker-server")) as running:
        yield running


def run(server: TinkerTestServer, run_dir: Path, *overrides: str) -> ArmOutcome:
    everything = [
        "backend=tinker",
        f"backend.params.base_url={server.url}",
        "model=tiny",
        "eval.max_tokens=8",
        "eval.n_samples=4",
        *overrides,
    ]
    _, config = compose_and_validate(everything)
    return run_arm(config, run_dir, overrides=everything)


@pytest.fixture
def recorder(clean_registries: None) -> type[Recorder]:
    Recorder.calls = []
    register_callback("recorder")(Recorder)
    return Recorder


def test_tinker_sft_calls_the_hooks_in_order(
    server: TinkerTestServer, recorder: type[Recorder], tmp_path: Path
) -> None:
    outcome = run(
        server,
        tmp_path / "run",
        "algorithm.params.max_steps=4",
        "algorithm.params.save_every=3",
        VAL_EVERY_2,
        "callbacks=[{kind: recorder}]",
    )
    assert outcome.record["status"] == "completed", outcome.record["error"]
    calls = recorder.calls
    assert hooks_of(calls) == FOUR_STEPS_VALIDATED_EVERY_2_SAVED_EVERY_3
    ends = {call[1]: call[2] for call in calls if call[0] == "on_step_end"}
    assert all(ends[step]["train/loss"] > 0 for step in (1, 2, 3, 4))
    assert VAL_METRIC in ends[2] and VAL_METRIC not in ends[3]
    saves = [call[2] for call in calls if call[0] == "on_save"]
    assert (
        saves[0].endswith("/step_3") and saves[1] == outcome.record["artifacts"]["final_checkpoint"]
    )


def test_tinker_rl_stops_when_a_callback_asks(
    server: TinkerTestServer, clean_registries: None, tmp_path: Path
) -> None:
    from evsys.callbacks import Stop

    @register_callback("stop_at_two")
    class StopAtTwo:
        def on_step_end(self, step: int, metrics: dict[str, float]) -> Stop | None:
            return Stop("enough") if step == 2 else None

    outcome = run(
        server,
        tmp_path / "run",
        "algorithm=rl",
        "algorithm.params.max_steps=6",
        "algorithm.params.batch_size=2",
        "algorithm.params.group_size=2",
        "algorithm.params.max_tokens=4",
        "callbacks=[{kind: stop_at_two}]",
    )
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    assert record["metrics"]["train/steps"] == 2
    assert record["extras"]["stopped_by"] == "stop_at_two: enough"


def test_early_stopping_ends_tinker_sft_at_the_stalled_validation(
    server: TinkerTestServer, tmp_path: Path
) -> None:
    # The tiny model scores 0 on every validation: validated at 2, no better at 4: stopped.
    watch = f"{{kind: early_stopping, params: {{metric: {VAL_METRIC}, patience: 1}}}}"
    outcome = run(
        server,
        tmp_path / "run",
        "algorithm.params.max_steps=10",
        VAL_EVERY_2,
        f"callbacks=[{watch}]",
    )
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    assert record["metrics"]["train/steps"] == 4  # a validated step is read before the next is sent
    assert record["extras"]["stopped_by"].startswith("early_stopping:")
