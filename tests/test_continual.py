"""Continual stages: one training stage per dataset, chained, every stage scored on every eval set.

On the mock backend the toy policy remembers a bounded number of prompts (capacity grows with
the LoRA rank), so a second dataset really crowds the first out: the tests check the numbers the
matrix shows against what the checkpoints hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_evsys

from evsys.backends.mock.policy import MockPolicy
from evsys.compose.compose import compose_and_validate
from evsys.errors import ConfigError
from evsys.protocols import RunResult
from evsys.report import format_run_summary
from evsys.rows import prompt_text
from evsys.run.continual import CONTINUAL_MD
from evsys.run.dependencies import ArmDependencies
from evsys.run.runner import ArmOutcome, run_arm

EM = "exact_match"
TOOLS, SUMS = "tool_selection", "arithmetic"
S0, S1 = f"stage/0_{TOOLS}", f"stage/1_{SUMS}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(overrides: list[str], run_dir: Path, **deps: Any) -> ArmOutcome:
    _, config = compose_and_validate(overrides)
    return run_arm(config, run_dir, overrides=overrides, dependencies=ArmDependencies(**deps))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArmOutcome, Path]:
    run_dir = tmp_path_factory.mktemp("continual") / "run"
    return run(["experiment=continual_mock"], run_dir), run_dir


def test_each_stage_trains_from_the_previous_stage_checkpoint(chain) -> None:
    outcome, run_dir = chain
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    first = run_dir / "phases" / f"0_{TOOLS}" / "checkpoints" / "final"
    second = run_dir / "phases" / f"1_{SUMS}" / "checkpoints" / "final"
    assert record["artifacts"]["final_checkpoint"] == str(second)

    # The second stage began with the first stage's memory: tool prompts it never trained on
    # are still in its checkpoint, next to arithmetic ones.
    tool_prompts = set(MockPolicy.load(first).answers)
    kept = tool_prompts & set(MockPolicy.load(second).answers)
    assert kept and len(kept) < len(tool_prompts)
    assert any("What is" in p for p in MockPolicy.load(second).answers)

    # Steps continue across stages: 160 rows / 4 then 200 rows / 4.
    metrics = record["metrics"]
    assert metrics[f"{S0}/train/steps"] == 40 and metrics[f"{S1}/train/steps"] == 50
    assert metrics["train/steps"] == 90
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    loss_steps = [m["step"] for m in logged if "train/loss" in m]
    assert loss_steps == sorted(loss_steps) and max(loss_steps) == 90


def test_the_matrix_shows_a_skill_gained_and_one_partly_forgotten(chain) -> None:
    outcome, _ = chain
    m = outcome.record["metrics"]
    before_tools, before_sums = m[f"baseline/eval/{TOOLS}/{EM}"], m[f"baseline/eval/{SUMS}/{EM}"]
    assert before_tools == before_sums == 0  # an untrained mock knows nothing
    # Stage 0 teaches tools and nothing about sums.
    assert m[f"{S0}/eval/{TOOLS}/{EM}"] > 0.7 and m[f"{S0}/eval/{SUMS}/{EM}"] == 0
    # Stage 1 teaches sums and forgets part, not all, of the tools.
    assert m[f"{S1}/eval/{SUMS}/{EM}"] > 0.3
    assert 0 < m[f"{S1}/eval/{TOOLS}/{EM}"] < m[f"{S0}/eval/{TOOLS}/{EM}"]
    # After the last stage: each set, their mean, and the backward transfer (forgetting < 0).
    assert m[f"eval/{TOOLS}/{EM}"] == m[f"{S1}/eval/{TOOLS}/{EM}"]
    assert m[f"eval/{EM}"] == pytest.approx((m[f"eval/{TOOLS}/{EM}"] + m[f"eval/{SUMS}/{EM}"]) / 2)
    assert m[f"continual/backward_transfer/{EM}"] == pytest.approx(
        m[f"{S1}/eval/{TOOLS}/{EM}"] - m[f"{S0}/eval/{TOOLS}/{EM}"]
    )


def test_scores_come_from_each_stage_checkpoint(chain) -> None:
    """Re-score the tool eval set by hand on each stage's checkpoint: the matrix's numbers."""
    outcome, run_dir = chain
    rows = read_jsonl(REPO / "data" / TOOLS / "test.jsonl")
    for stage in (f"0_{TOOLS}", f"1_{SUMS}"):
        policy = MockPolicy.load(run_dir / "phases" / stage / "checkpoints" / "final")
        predictions = run_dir / "phases" / stage / "eval" / TOOLS / "predictions.jsonl"
        written = read_jsonl(predictions)
        assert len(written) == len(rows)
        hits = 0
        for row, record in zip(rows, written, strict=True):
            known, _ = policy.recall(prompt_text({"messages": record["prompt"]}))
            answer = policy.answers.get(known, "") if known else ""
            hits += answer == f"<answer>{row['answer']}</answer>"
        assert outcome.record["metrics"][f"stage/{stage}/eval/{TOOLS}/{EM}"] == hits / len(rows)


def test_the_table_is_written_and_printed(chain) -> None:
    outcome, run_dir = chain
    m = outcome.record["metrics"]
    table = (run_dir / CONTINUAL_MD).read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0] == f"| after stage | {TOOLS} | {SUMS} | mean |"
    assert [r.split(" | ")[0] for r in rows[2:]] == [
        "| before training",
        f"| 0_{TOOLS}",
        f"| 1_{SUMS}",
    ]
    assert rows[-1].split(" | ")[1] == f"{m[f'eval/{TOOLS}/{EM}']:.4g}"
    assert f"| 1_{SUMS} |" in format_run_summary(outcome.record)


def test_a_larger_adapter_forgets_less(tmp_path: Path) -> None:
    small = run(["experiment=continual_mock", "algorithm.params.lora_rank=8"], tmp_path / "r8")
    large = run(["experiment=continual_mock", "algorithm.params.lora_rank=32"], tmp_path / "r32")
    key = f"continual/backward_transfer/{EM}"
    assert small.record["metrics"][key] < large.record["metrics"][key] <= 0


def test_an_injected_train_function_is_called_once_per_stage_in_order(tmp_path: Path) -> None:
    calls: list[tuple[str, str | None, Path]] = []

    def train(config, run_dir: Path) -> RunResult:
        calls.append(
            (Path(config.data.path).parent.name, config.model.load_checkpoint_path, run_dir)
        )
        checkpoint = run_dir / "checkpoints" / "final"
        checkpoint.mkdir(parents=True)
        return RunResult(
            run_id="injected",
            status="completed",
            metrics={"train/steps": 3.0},
            artifacts={"final_checkpoint": str(checkpoint)},
        )

    scored: list[str | None] = []

    class Echo:  # answers every prompt with the same tool: right on some rows, wrong on sums
        def generate(self, *, prompt, max_tokens=256, temperature=0.0, stop=None) -> str:
            return "<answer>GMAIL_SEND_EMAIL</answer>"

    def inference(config, checkpoint):
        scored.append(checkpoint)
        return Echo()

    outcome = run(
        ["experiment=continual_mock"], tmp_path / "run", train=train, inference_factory=inference
    )
    assert outcome.record["status"] == "completed", outcome.record["error"]
    first_dir = tmp_path / "run" / "phases" / f"0_{TOOLS}"
    assert calls == [
        (TOOLS, None, first_dir),
        (SUMS, str(first_dir / "checkpoints" / "final"), tmp_path / "run" / "phases" / f"1_{SUMS}"),
    ]
    # The baseline, then each stage's checkpoint.
    assert scored == [
        None,
        calls[1][1],
        str(tmp_path / "run/phases/1_arithmetic/checkpoints/final"),
    ]
    m = outcome.record["metrics"]
    rows = read_jsonl(REPO / "data" / TOOLS / "test.jsonl")
    share = sum(r["answer"] == "GMAIL_SEND_EMAIL" for r in rows) / len(rows)
    assert m[f"{S0}/eval/{TOOLS}/{EM}"] == m[f"{S1}/eval/{TOOLS}/{EM}"] == share > 0
    assert m[f"{S1}/eval/{SUMS}/{EM}"] == 0 and m["train/steps"] == 6


def test_a_failing_stage_fails_the_run_and_keeps_the_stages_before_it(tmp_path: Path) -> None:
    # Stage 0 has 40 steps, stage 1 fails at its step 45.
    outcome = run(["experiment=continual_mock", "backend.params.fail_at_step=45"], tmp_path)
    record = outcome.record
    assert record["status"] == "failed"
    assert "mock backend failed at step 45" in record["error"]
    table = (tmp_path / CONTINUAL_MD).read_text()
    assert f"| 0_{TOOLS} |" in table and f"| 1_{SUMS} |" not in table


@pytest.mark.parametrize(
    ("override", "path", "message"),
    [
        ("continual={datasets: []}", "continual.datasets", "at least 1 item"),
        (
            "continual={datasets: [{name: a, path: x.jsonl}, {name: a, path: y.jsonl}]}",
            "continual.datasets",
            "repeated: a",
        ),
        ("continual={datasets: [{name: 'a/b', path: x.jsonl}]}", "continual.datasets[0].name", ""),
        ("continual={datasets: [{name: a, pth: x.jsonl}]}", "continual.datasets[0].pth", ""),
    ],
)
def test_bad_stages_are_config_errors(override: str, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compose_and_validate([override])
    problems = [p for p in caught.value.problems if p.path == path]
    assert problems, caught.value.problems
    assert message in problems[0].message


TWO_STAGES = (
    "continual={datasets: [{name: tools, path: ${evsys_data:tool_selection/train.jsonl}}, "
    "{name: sums, path: ${evsys_data:arithmetic/train.jsonl}}]}"
)


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        (["algorithm=gepa_prompt"], "algorithm.kind"),
        (
            ["algorithm=combo", "+algorithm.params.phases=[{kind: sft}, {kind: gepa_prompt}]"],
            "algorithm.params.phases[1].kind",
        ),
    ],
)
def test_a_recipe_that_moves_no_weights_cannot_be_a_stage(overrides: list[str], path: str) -> None:
    """gepa_prompt tunes a prompt: a stage would hand on no checkpoint and score without it."""
    with pytest.raises(ConfigError) as caught:
        compose_and_validate(["backend=mock", TWO_STAGES, *overrides])
    (problem,) = caught.value.problems
    assert (problem.path, problem.value) == (path, "gepa_prompt")
    assert "cannot run in a continual stage: it moves no weights" in problem.message
    compose_and_validate(["backend=mock", *overrides])  # without continual it is a fine run


def test_evsys_validate_exits_2_on_a_prompt_tuning_stage(workdir: Path) -> None:
    args = ("validate", "algorithm=gepa_prompt", "backend=mock", TWO_STAGES)
    done = run_evsys(*args, cwd=workdir, module=False)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, said
    assert "1 problem" in said and "Traceback" not in said
    assert "algorithm.kind: 'gepa_prompt' cannot run in a continual stage" in said


def test_a_missing_stage_file_fails_before_any_stage_trains(workdir: Path) -> None:
    stages = "{datasets: [{name: a, path: nowhere.jsonl}]}"
    done = run_evsys(f"continual={stages}", f"hydra.run.dir={workdir / 'run'}", cwd=workdir)
    assert done.returncode == 2, done.stderr
    record = json.loads((workdir / "run" / "run_result.json").read_text())
    assert record["error_type"] == "DataError" and "nowhere.jsonl" in record["error"]
    assert not (workdir / "run" / "phases").exists()


def test_n_repeats_replicates_the_whole_chain(workdir: Path) -> None:
    done = run_evsys("--multirun", "experiment=continual_mock", cwd=workdir, timeout=300)
    assert done.returncode == 0, done.stderr
    (sweep,) = (workdir / "outputs" / "sweeps").glob("*/*")
    result = json.loads((sweep / "sweep_result.json").read_text())
    assert [arm["seed"] for arm in result["arms"]] == [1, 2, 3]
    (group,) = result["groups"]
    stats = group["metrics"][f"{S1}/eval/{TOOLS}/{EM}"]
    assert stats["n"] == 3 and stats["std"] is not None
    for arm in result["arms"]:
        assert (Path(arm["run_dir"]) / CONTINUAL_MD).is_file()


def test_local_stages_chain_lora_adapters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same chain on TRL + PEFT with the tiny model: 2 steps per stage, 4 rows per eval set."""
    from conftest import require

    require("trl", "pip install 'evsys[local]'")
    require("peft", "pip install 'evsys[local]'")
    from safetensors.torch import load_file

    from evsys.backends.local.backend import LocalBackend

    prepared: list[str | None] = []
    original = LocalBackend.prepare

    def prepare(self, *, model, run_dir):  # the real prepare, noting where each stage starts
        prepared.append(model.load_checkpoint_path)
        return original(self, model=model, run_dir=run_dir)

    monkeypatch.setattr(LocalBackend, "prepare", prepare)

    overrides = [
        "experiment=continual_mock",
        "backend=local",
        "model=tiny",
        "algorithm.params.max_steps=2",
        "algorithm.params.learning_rate=5e-3",
        "eval.n_samples=4",
        "eval.max_tokens=8",
    ]
    outcome = run(overrides, tmp_path)
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    adapters = [
        load_file(tmp_path / "phases" / stage / "checkpoints/final/adapter_model.safetensors")
        for stage in (f"0_{TOOLS}", f"1_{SUMS}")
    ]
    # Stage 1 was prepared from stage 0's adapter, and both trained (a fresh LoRA's B is zero).
    assert prepared == [None, str(tmp_path / "phases" / f"0_{TOOLS}" / "checkpoints" / "final")]
    assert adapters[0].keys() == adapters[1].keys()
    assert any(adapters[0][k].abs().sum() > 0 for k in adapters[0] if "lora_B" in k)
    assert any(not adapters[0][k].equal(adapters[1][k]) for k in adapters[0])
    m = record["metrics"]
    assert m["train/steps"] == 4
    for after in ("baseline", S0, S1):
        for eval_set in (TOOLS, SUMS):
            assert 0.0 <= m[f"{after}/eval/{eval_set}/{EM}"] <= 1.0
    assert (tmp_path / CONTINUAL_MD).is_file()
