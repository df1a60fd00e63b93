"""The tinker backend under the real ``tinker`` SDK, against the Tinker-protocol test server.

The server (tests/tinker_server) computes every answer with the tiny Llama, so losses fall,
rewards move and checkpoints round-trip for real. One SFT run is shared by the tests that read
its outputs; a second run starts from its final checkpoint, as the chaining recipes do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import harbor_tasks_rewarding_digits, require  # noqa: E402

require("tinker", "pip install 'evsys[tinker]'", declared_by="EVSYS_REQUIRE_TINKER")
require("transformers", "pip install 'evsys[local]'", declared_by="EVSYS_REQUIRE_TINKER")

from tinker_server import TINY, TinkerTestServer, serving_tiny  # noqa: E402

from evsys.backends.tinker.inference import TinkerInferenceClient  # noqa: E402
from evsys.compose.compose import compose_and_validate  # noqa: E402
from evsys.config import Strict  # noqa: E402
from evsys.protocols import VerificationResult  # noqa: E402
from evsys.registry import register_verifier  # noqa: E402
from evsys.run.runner import ArmOutcome, run_arm  # noqa: E402

pytestmark = pytest.mark.tinker

SFT_STEPS = 6
PROMPTS: list[Any] = [
    [
        {
            "role": "system",
            "content": "Choose the one tool. Reply with <answer>TOOL_SLUG</answer>.",
        },
        {"role": "user", "content": "Email Fatima that the invoice has been paid"},
    ],
    [{"role": "user", "content": "What's the forecast for Nairobi tomorrow?"}],
    "List the open pull requests in acme/mobile",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinkerTestServer]:
    with serving_tiny(tmp_path_factory.mktemp("tinker-server")) as running:
        yield running


def run(server: TinkerTestServer, run_dir: Path, *overrides: str) -> ArmOutcome:
    everything = [
        "backend=tinker",
        f"backend.params.base_url={server.url}",
        "model=tiny",
        *overrides,
    ]
    _, config = compose_and_validate(everything)
    return run_arm(config, run_dir, overrides=everything)


def metrics_of(run_dir: Path, key: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [m for m in lines if key in m]


@pytest.fixture(scope="module")
def sft_run(
    server: TinkerTestServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ArmOutcome, Path, list[tuple[str, ...]]]:
    """Six SFT steps on tool selection, a state saved every three, eval on 8 held-out rows; the
    server takes at least 0.1 s per forward_backward, so overlapping steps show in its events."""
    run_dir = tmp_path_factory.mktemp("tinker-sft") / "run"
    start = len(server.events)
    server.delays["forward_backward"] = 0.1
    try:
        outcome = run(
            server,
            run_dir,
            f"algorithm.params.max_steps={SFT_STEPS}",
            "algorithm.params.learning_rate=5e-3",
            "algorithm.params.save_every=3",
            "eval.max_tokens=8",
            "eval.n_samples=8",
        )
    finally:
        server.delays.clear()
    return outcome, run_dir, server.events[start:]


def test_sft_loss_falls_and_states_are_saved(sft_run: tuple[ArmOutcome, Path, Any]) -> None:
    outcome, run_dir, _ = sft_run
    record = outcome.record
    assert record["status"] == "completed", record["error"]

    steps = metrics_of(run_dir, "train/loss")
    assert [m["step"] for m in steps] == list(range(1, SFT_STEPS + 1))
    losses = [m["train/loss"] for m in steps]
    assert losses[-1] < 0.7 * losses[0]  # NLL per assistant token, computed by the tiny model
    lrs = [m["train/lr"] for m in steps]
    assert lrs[0] == pytest.approx(5e-3) and lrs == sorted(lrs, reverse=True) and lrs[-1] > 0
    assert all(m["train/num_tokens"] > 0 for m in steps)

    final = record["artifacts"]["final_checkpoint"]
    assert final.startswith("tinker://") and final.endswith("/weights/final")
    assert record["artifacts"]["final_sampler_checkpoint"].endswith("/sampler_weights/final")
    artifacts = json.loads((run_dir / "artifacts.json").read_text())
    run_id = final.removeprefix("tinker://").split("/")[0]
    assert artifacts["checkpoint_step_3"] == f"tinker://{run_id}/weights/step_3"
    assert artifacts["checkpoint_step_6"] == f"tinker://{run_id}/weights/step_6"

    # Eval sampled the trained weights through the tinker inference client.
    assert 0.0 <= record["metrics"]["eval/exact_match"] <= 1.0
    assert len((run_dir / "predictions.jsonl").read_text().splitlines()) == 8


def test_sft_steps_go_as_protobuf_and_overlap(sft_run: tuple[ArmOutcome, Path, Any]) -> None:
    _, _, events = sft_run
    assert ("protobuf", "/api/v1/forward_backward") in events
    submitted = [e for e in events if e[0] == "submit" and e[1] == "forward_backward"]
    assert len(submitted) == SFT_STEPS
    # Pipelining: the next step (and its optimizer step) is on the server before the
    # previous forward_backward has finished.
    first_done = events.index(("done", "forward_backward", submitted[0][2]))
    assert events.index(submitted[1]) < first_done
    optim = [e for e in events if e[:2] == ("submit", "optim_step")]
    assert events.index(optim[0]) < first_done
    assert any(e[0] == "finish" for e in events)  # the backend finished its session


def test_a_second_run_starts_from_the_final_checkpoint(
    server: TinkerTestServer, sft_run: tuple[ArmOutcome, Path, Any], tmp_path: Path
) -> None:
    """What sdft and combo do between phases: prepare(load_checkpoint_path=final_checkpoint)."""
    outcome, first_dir, _ = sft_run
    final = outcome.record["artifacts"]["final_checkpoint"]
    first_losses = [m["train/loss"] for m in metrics_of(first_dir, "train/loss")]

    start = len(server.events)
    second = run(
        server,
        tmp_path / "second",
        f"model.load_checkpoint_path={final}",
        "algorithm.params.max_steps=2",
        "algorithm.params.learning_rate=5e-3",
        "eval=none",
    )
    assert second.record["status"] == "completed", second.record["error"]
    kinds = [e[1] for e in server.events[start:] if e[0] == "submit"]
    assert "load_weights" in kinds and "create_model" not in kinds
    resumed = metrics_of(tmp_path / "second", "train/loss")[0]["train/loss"]
    # It starts where the first run ended, far below the base model's loss.
    assert resumed < 0.7 * first_losses[0]
    assert second.record["artifacts"]["final_checkpoint"] != final


def test_a_checkpoint_path_that_is_not_a_state_is_refused(
    server: TinkerTestServer, sft_run: tuple[ArmOutcome, Path, Any], tmp_path: Path
) -> None:
    sampler = sft_run[0].record["artifacts"]["final_sampler_checkpoint"]
    outcome = run(server, tmp_path / "run", f"model.load_checkpoint_path={sampler}", "eval=none")
    assert outcome.record["status"] == "failed"
    assert outcome.bad_input and "tinker://<run>/weights/<name>" in outcome.record["error"]


def test_missing_checkpoint_fails_with_the_services_reason(
    server: TinkerTestServer, tmp_path: Path
) -> None:
    missing = "tinker://nobody:train:0/weights/final"
    outcome = run(server, tmp_path / "run", f"model.load_checkpoint_path={missing}", "eval=none")
    assert outcome.record["status"] == "failed"
    assert "does not exist" in outcome.record["error"] and missing in outcome.record["error"]


def test_the_inference_client_samples_the_saved_weights(
    server: TinkerTestServer, sft_run: tuple[ArmOutcome, Path, Any]
) -> None:
    artifacts = sft_run[0].record["artifacts"]
    final = artifacts["final_checkpoint"]
    last_step = final.replace("/weights/final", f"/weights/step_{SFT_STEPS}")
    common = {"base_url": server.url, "model": TINY}
    start = len(server.events)
    clients = {
        "final": TinkerInferenceClient(**common, checkpoint=final),
        "sampler": TinkerInferenceClient(
            **common, checkpoint=artifacts["final_sampler_checkpoint"]
        ),
        "last_step": TinkerInferenceClient(**common, checkpoint=last_step),
        "base": TinkerInferenceClient(**common),
    }
    # The final state is sampled from the sampler weights saved beside it; a state without
    # them (step_N) is loaded into a training client first.
    submitted = [e[1] for e in server.events[start:] if e[0] == "submit"]
    assert submitted == ["load_weights", "save_weights_for_sampler"]
    try:
        greedy = {
            name: c.generate_batch(prompts=PROMPTS, max_tokens=12, temperature=0.0)
            for name, c in clients.items()
        }
        # The last step's state and the final sampler weights are the same weights.
        assert greedy["final"] == greedy["sampler"] == greedy["last_step"]
        assert greedy["final"] != greedy["base"]
        # One prompt at a time answers as the batch does.
        one = clients["sampler"].generate(prompt=PROMPTS[1], max_tokens=12, temperature=0.0)
        assert one == greedy["sampler"][1]
        # Stop strings cut the completion.
        text = greedy["sampler"][0]
        if len(text) > 2:
            cut = clients["sampler"].generate(prompt=PROMPTS[0], max_tokens=12, stop=[text[2:]])
            assert cut == text[:2]
        sampled = clients["sampler"].generate_batch(prompts=PROMPTS, max_tokens=12, temperature=1.0)
        assert len(sampled) == len(PROMPTS) and all(isinstance(s, str) for s in sampled)
    finally:
        for client in clients.values():
            client.close()


@pytest.fixture
def digit_verifier(clean_registries: None) -> str:
    """A reward the tiny model's samples differ on: the share of digits in the completion."""

    @register_verifier("digit_share")
    class DigitShare:
        class Config(Strict):
            pass

        def __init__(self, **params: Any):
            self.cfg = self.Config(**params)

        def verify(self, *, prompt: str, completion: str, target: Any) -> VerificationResult:
            share = sum(c.isdigit() for c in completion) / max(len(completion), 1)
            return VerificationResult(share)

    return "digit_share"


def test_rl_raises_the_reward_and_logs_its_stats(
    server: TinkerTestServer, digit_verifier: str, tmp_path: Path
) -> None:
    steps = 10
    outcome = run(
        server,
        tmp_path / "run",
        "algorithm=rl",
        "data=arithmetic",
        "eval=none",
        f"algorithm.params.max_steps={steps}",
        "algorithm.params.learning_rate=2e-2",
        "algorithm.params.batch_size=4",
        "algorithm.params.group_size=6",
        "algorithm.params.max_tokens=16",
        f"algorithm.params.verifier.kind={digit_verifier}",
        "algorithm.params.save_every=5",
    )
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    rows = metrics_of(tmp_path / "run", "train/reward_mean")
    assert [m["step"] for m in rows] == list(range(1, steps + 1))
    for m in rows:
        assert 0.0 <= m["train/frac_zero_std_groups"] <= 1.0
        assert m["train/reward_std"] >= 0.0 and m["train/completion_length"] > 0
        assert "train/loss" in m and m["train/lr"] == pytest.approx(2e-2)
    rewards = [m["train/reward_mean"] for m in rows]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.1  # the policy learnt
    assert record["metrics"]["train/final_reward_mean"] == rewards[-1]
    artifacts = json.loads((tmp_path / "run" / "artifacts.json").read_text())
    assert {"checkpoint_step_5", "checkpoint_step_10", "final_checkpoint"} <= set(artifacts)


def test_rl_with_ppo_and_a_kl_penalty(
    server: TinkerTestServer, digit_verifier: str, tmp_path: Path
) -> None:
    outcome = run(
        server,
        tmp_path / "run",
        "algorithm=rl",
        "data=arithmetic",
        "eval=none",
        "algorithm.params.max_steps=2",
        "algorithm.params.batch_size=2",
        "algorithm.params.group_size=3",
        "algorithm.params.max_tokens=8",
        "algorithm.params.loss=ppo",
        "algorithm.params.learning_rate=1e-2",
        "algorithm.params.kl_coef=0.1",
        f"algorithm.params.verifier.kind={digit_verifier}",
    )
    assert outcome.record["status"] == "completed", outcome.record["error"]
    rows = metrics_of(tmp_path / "run", "train/kl")
    assert [m["step"] for m in rows] == [1, 2]
    # After one update the policy has moved away from the base model that scores the samples.
    assert rows[0]["train/kl"] == pytest.approx(0.0, abs=1e-3)
    assert abs(rows[1]["train/kl"]) > 1e-3


def test_rl_on_harbor_tasks_rewards_with_each_tasks_verifier(
    server: TinkerTestServer, clean_registries: None, tmp_path: Path
) -> None:
    overrides, calls = harbor_tasks_rewarding_digits(tmp_path)
    outcome = run(server, tmp_path / "run", *overrides)
    assert outcome.record["status"] == "completed", outcome.record["error"]
    rows = metrics_of(tmp_path / "run", "train/reward_mean")
    assert [m["step"] for m in rows] == [1, 2]
    assert all(0.0 <= m["train/reward_mean"] <= 0.5 for m in rows)
    # 2 steps × 2 tasks × 2 samples, each scored by the task's function with its params.
    assert len(calls) == 8 and {scale for _, scale in calls} == {0.5}
    assert {expected for expected, _ in calls} <= {"0", "2", "4", "6"}


def test_importing_the_backend_does_not_import_tinker() -> None:
    import subprocess
    import sys

    code = (
        "import sys, evsys.backends.tinker; print('tinker' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert done.stdout.split() == ["False", "False"]


VALIDATION = Path(__file__).resolve().parent.parent / "data" / "tool_selection" / "validation"


def test_combo_chains_tinker_states_and_validates_in_the_loop(
    server: TinkerTestServer, digit_verifier: str, tmp_path: Path
) -> None:
    phases = (
        "[{kind: sft, params: {max_steps: 3, learning_rate: 5e-3, batch_size: 2}},"
        f" {{kind: rl, params: {{max_steps: 2, batch_size: 2, group_size: 2, max_tokens: 8,"
        f" verifier: {{kind: {digit_verifier}}}}}}}]"
    )
    val = f"[{{path: '{VALIDATION}', tags: [val], run_every: 2, metrics: [{{kind: exact_match}}]}}]"
    seen = len(server.events)
    outcome = run(
        server,
        tmp_path / "run",
        "algorithm=combo",
        f"+algorithm.params.phases={phases}",
        f"+metadata.benchmark={val}",
        "eval.n_samples=4",
        "eval.max_tokens=8",
    )
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    final = record["artifacts"]["final_checkpoint"]
    assert final.startswith("tinker://") and "/weights/" in final
    assert record["metrics"]["train/steps"] == 5
    # The RL phase's training client was loaded from the SFT phase's final state.
    assert any(e[:2] == ("submit", "load_weights") for e in server.events[seen:])
    # val every 2 steps of each phase, on the live weights: SFT's 2, then RL's 2 (step 5).
    key = "val/tool_selection_val/exact_match"
    assert [m["step"] for m in metrics_of(tmp_path / "run", key)] == [2, 5]


def test_sdft_keeps_verified_samples_on_tinker(
    server: TinkerTestServer, digit_verifier: str, tmp_path: Path
) -> None:
    outcome = run(
        server,
        tmp_path / "run",
        "algorithm=sdft",
        "data=arithmetic",
        "data.limit=4",
        "eval=none",
        f"algorithm.params.verifier.kind={digit_verifier}",
        "algorithm.params.min_reward=0.01",
        "algorithm.params.samples_per_prompt=2",
        "algorithm.params.max_tokens=8",
        "algorithm.params.max_steps=2",
        "algorithm.params.batch_size=2",
    )
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    samples = (tmp_path / "run/phases/0_sft/samples.jsonl").read_text().splitlines()
    assert len(samples) == record["metrics"]["phase/0_sft/sdft/accepted"] > 0
    assert record["artifacts"]["final_checkpoint"].startswith("tinker://")
