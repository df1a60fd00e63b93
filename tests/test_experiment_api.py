"""``evsys.Experiment``: the command's experiment from Python, and the conclusion it draws.

The API and the command are run on the same overrides and must leave the same aggregate; the
conclusion is checked on arms whose metrics an injected train function sets exactly.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_evsys

from evsys import Experiment
from evsys.benchmarks import Benchmark
from evsys.config import BenchmarkSpec, ExperimentConfig, MetricSpec
from evsys.errors import ConfigError
from evsys.protocols import RunResult
from evsys.sweep.aggregate import ArmRow, summarize

SCORE = "train/score"
SWEEP_FILES = ("sweep_result.json", "summary.md")


def scored_by(table: dict[tuple[int, int], float], calls: list | None = None):
    """A train function whose ``train/score`` is ``table[(lora_rank, seed)]``."""

    def train(config: ExperimentConfig, run_dir: Path) -> RunResult:
        if calls is not None:
            calls.append((config.algorithm.params["lora_rank"], config.seed, run_dir))
        score = table[(config.algorithm.params["lora_rank"], config.seed)]
        return RunResult(run_id=run_dir.name, status="completed", metrics={SCORE: score})

    return train


def rank_sweep(**options: Any) -> Experiment:
    """Ranks 8 and 32 over seeds 0, 1, 2, ranked by train/score; no eval."""
    return Experiment.from_overrides(
        [
            "algorithm.params.lora_rank=8,32",
            "hydra.sweeper.n_repeats=3",
            f"metadata.success_metric={{name: '{SCORE}', direction: max}}",
            "metadata.hypothesis='Rank 32 beats rank 8.'",
            "eval=none",
        ],
        multirun=True,
        **options,
    )


# -- the conclusion -----------------------------------------------------------------------------


def test_a_win_larger_than_the_seed_spread(tmp_path: Path) -> None:
    table = {(8, s): v for s, v in enumerate([0.50, 0.52, 0.48])}
    table |= {(32, s): v for s, v in enumerate([0.80, 0.83, 0.77])}
    result = rank_sweep(train_fn=scored_by(table)).run(tmp_path / "sweep")

    assert result.status == "completed" and not result.failed
    assert result.hypothesis == "Rank 32 beats rank 8."
    assert result.best_arm is not None and result.best_arm.name == "lora_rank32__seed1"
    assert result.best_value == 0.83
    assert [(g.n, round(g.metrics[SCORE].mean, 6)) for g in result.groups] == [(3, 0.5), (3, 0.8)]
    spread_32 = statistics.stdev([0.80, 0.83, 0.77])  # 0.03
    assert result.groups[1].metrics[SCORE].std == pytest.approx(spread_32)

    lines = result.conclusion.splitlines()
    assert lines[0] == "Hypothesis: Rank 32 beats rank 8."
    assert lines[1].startswith(
        "`algorithm.params.lora_rank=32` is best on `train/score` (higher is better): "
        "0.8 ± 0.03 over 3 seeds, against 0.5 ± 0.02 over 3 seeds for the runner-up "
        "`algorithm.params.lora_rank=8`: ahead by 0.3 (60.0% of the runner-up's value)."
    )
    assert "The difference exceeds the spread across seeds" in lines[1]
    assert "(0.3 > 0.03 + 0.02)" in lines[1]
    assert lines[2] == "Best single arm: `lora_rank32__seed1` (train/score = 0.83)."
    assert len(lines) == 3  # nothing failed

    # The command shows the same conclusion: sweep_result.json, summary.md, `evsys results`.
    sweep = result.output_dir
    assert json.loads((sweep / "sweep_result.json").read_text())["conclusion"] == result.conclusion
    assert "## Conclusion" in (sweep / "summary.md").read_text()
    shown = run_evsys("results", str(sweep), cwd=tmp_path, module=False)
    assert shown.returncode == 0, shown.stderr
    assert "The difference exceeds the spread across seeds" in shown.stdout


def test_a_win_within_the_seed_spread(tmp_path: Path) -> None:
    table = {(8, s): v for s, v in enumerate([0.50, 0.60, 0.40])}
    table |= {(32, s): v for s, v in enumerate([0.55, 0.45, 0.53])}
    result = rank_sweep(train_fn=scored_by(table)).run(tmp_path / "sweep")

    outcome = result.conclusion.splitlines()[1]
    assert outcome.startswith("`algorithm.params.lora_rank=32` is best on `train/score`")
    assert "ahead by 0.01 " in outcome
    assert "does not exceed the spread across seeds" in outcome
    assert "(0.01 ≤ 0.05292 + 0.1)" in outcome and "may not hold" in outcome


def test_one_seed_per_group_leaves_the_spread_unknown() -> None:
    arms = [
        ArmRow(f"r{rank}", f"r{rank}", [f"algorithm.params.lora_rank={rank}"], "completed",
               {SCORE: value}, None, f"g{rank}", 0, None)
        for rank, value in ((8, 0.4), (32, 0.7))
    ]  # fmt: skip
    summary = summarize("x", Path("."), arms, {"name": SCORE, "direction": "min"}, "")
    outcome = summary.conclusion.splitlines()[0]
    assert outcome.startswith("`algorithm.params.lora_rank=8` is best on `train/score` (lower")
    assert "spread across seeds is unknown" in outcome and "n_repeats" in outcome
    assert summary.best_arm == "r8"


def test_a_tie_and_no_success_metric() -> None:
    arms = [
        ArmRow(name, name, [f"seed={i}", f"x={name}"], "completed", {SCORE: 0.5}, None, name, i,
               None)
        for i, name in enumerate(("a", "b"))
    ]  # fmt: skip
    tie = summarize("x", Path("."), arms, SCORE).conclusion
    assert tie.startswith("No configuration wins on `train/score`: `x=a` and `x=b` tie")
    unranked = summarize("x", Path("."), arms, None).conclusion
    assert unranked == (
        "No success metric is set (metadata.success_metric), so no arm is ranked; "
        "2 of 2 arms completed."
    )


def test_failed_arms_are_isolated_and_listed(tmp_path: Path) -> None:
    table = {(8, s): 0.5 for s in range(3)} | {(32, s): 0.9 for s in range(3)}
    train = scored_by(table)

    def sometimes_broken(config: ExperimentConfig, run_dir: Path) -> RunResult:
        if (config.algorithm.params["lora_rank"], config.seed) == (32, 1):
            raise RuntimeError("the GPU fell off the bus")
        return train(config, run_dir)

    result = rank_sweep(train_fn=sometimes_broken).run(tmp_path / "sweep")

    assert result.status == "completed"  # one failure does not fail the experiment
    assert [arm.name for arm in result.failed] == ["lora_rank32__seed1"]
    failed = result.arm("lora_rank32__seed1")
    assert failed.status == "failed" and failed.error == "RuntimeError: the GPU fell off the bus"
    assert failed.record is not None and "Traceback" in failed.record["traceback"]
    assert result.best_arm is not None and result.best_arm.name == "lora_rank32__seed0"
    assert result.conclusion.splitlines()[-1] == (
        "Failed arms (1 of 6): `lora_rank32__seed1` (failed: RuntimeError: the GPU fell off "
        "the bus)."
    )
    assert "0.9 ± 0 over 2 seeds" in result.conclusion  # the group's completed seeds only

    # Run again into the same directory: the sweep resumes, only the failed arm trains again.
    calls: list = []
    again = rank_sweep(train_fn=scored_by(table, calls)).run(tmp_path / "sweep")
    assert [(rank, seed) for rank, seed, _ in calls] == [(32, 1)]
    assert not again.failed and "Failed arms" not in again.conclusion


# -- the same semantics as the command ----------------------------------------------------------


def normalised(path: Path, sweep_dir: Path) -> str:
    return path.read_text().replace(str(sweep_dir), "<sweep>")


def test_a_sweep_leaves_the_same_aggregate_as_the_command(workdir: Path) -> None:
    overrides = ["experiment=lora_rank", "seed=1,2"]
    command_dir, api_dir = workdir / "command", workdir / "api"
    done = run_evsys("--multirun", *overrides, f"hydra.sweep.dir={command_dir}", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "The difference" in done.stdout  # the command prints the conclusion too

    result = Experiment.from_overrides(overrides, multirun=True).run(api_dir)

    for name in SWEEP_FILES:
        assert normalised(api_dir / name, api_dir) == normalised(command_dir / name, command_dir)
    plans = [json.loads((d / "sweep_plan.json").read_text()) for d in (command_dir, api_dir)]
    for plan in plans:
        del plan["created_at"], plan["launcher"]
    assert plans[0] == plans[1]
    assert [a.name for a in result.arms] == [a["name"] for a in plans[0]["arms"]]
    for arm in result.arms:
        theirs = json.loads((command_dir / arm.name / "run_result.json").read_text())
        assert arm.metrics == theirs["metrics"] and arm.overrides == theirs["overrides"]
        assert arm.config is not None and arm.config.model_dump(mode="json") == theirs["config"]
        assert (arm.run_dir / ".hydra" / "overrides.yaml").is_file()
    command_result = json.loads((command_dir / "sweep_result.json").read_text())
    assert result.best_arm is not None and result.best_arm.name == command_result["best_arm"]
    assert result.conclusion == command_result["conclusion"]

    # The command resumes a sweep the API made: every arm completed, so nothing runs again.
    before = (api_dir / "lora_rank8__seed1" / "run_result.json").read_text()
    resumed = run_evsys("resume", str(api_dir), cwd=workdir, module=False)
    assert resumed.returncode == 0, resumed.stderr
    assert (api_dir / "lora_rank8__seed1" / "run_result.json").read_text() == before


def test_a_single_run_is_the_commands_run(workdir: Path) -> None:
    overrides = ["algorithm.params.max_steps=6", "seed=3", "hydra.run.dir=ignored"]
    done = run_evsys(*overrides[:2], f"hydra.run.dir={workdir / 'command'}", cwd=workdir)
    assert done.returncode == 0, done.stderr

    result = Experiment.from_overrides(overrides).run(workdir / "api")

    (arm,) = result.arms
    theirs = json.loads((workdir / "command" / "run_result.json").read_text())
    ours = json.loads((workdir / "api" / "run_result.json").read_text())
    assert arm.status == "completed" and arm.run_dir == workdir / "api"
    assert arm.metrics == ours["metrics"] == theirs["metrics"]
    assert "eval/exact_match" in arm.metrics  # post-train eval ran
    assert ours["overrides"] == theirs["overrides"] == overrides[:2]  # hydra.* are Hydra's own
    assert ours["config"] == theirs["config"]
    assert not (workdir / "ignored").exists()
    assert result.best_arm is None  # the base config sets no success metric
    assert "no arm is ranked" in result.conclusion


def test_the_default_directory_is_the_commands(workdir: Path) -> None:
    result = Experiment.from_overrides(["algorithm.params.max_steps=2"]).run()
    assert result.output_dir.parent.parent == (workdir / "outputs" / "runs").resolve()
    assert result.output_dir.name.endswith("_sft-mock")
    assert (result.output_dir / "run_result.json").is_file()

    sweep = Experiment.from_overrides(["algorithm.params.max_steps=2", "seed=1,2"], multirun=True)
    swept = sweep.run()
    assert swept.output_dir.parent.parent == (workdir / "outputs" / "sweeps").resolve()
    assert [a.name for a in swept.arms] == ["seed1", "seed2"]
    master = (swept.output_dir / "multirun.yaml").read_text()
    assert "- seed=1,2" in master and "InProcessLauncher" in master


def test_a_bad_arm_refuses_the_run_before_anything_is_written(tmp_path: Path) -> None:
    experiment = Experiment.from_overrides(
        ["algorithm.params.lora_rank=8,0", "algorithm.params.max_steps=2"], multirun=True
    )
    arms = experiment.plan()
    assert [bool(a.problems) for a in arms] == [False, True]
    with pytest.raises(ConfigError) as caught:
        experiment.run(tmp_path / "sweep")
    assert "1 of 2 arms are invalid; no arm was launched" in str(caught.value)
    assert "lora_rank0: algorithm.params.lora_rank" in str(caught.value)
    assert not (tmp_path / "sweep").exists()

    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        Experiment.from_overrides(["algorithm.params.lerning_rate=1"]).run(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_continual_sweep_concludes_on_the_chains(tmp_path: Path) -> None:
    """Two adapter sizes, each chain (tool selection, then arithmetic) over the file's 3 seeds."""
    experiment = Experiment.from_file("continual_mock", ["algorithm.params.lora_rank=8,24"])
    result = experiment.run(tmp_path / "sweep")

    assert len(result.arms) == 6 and not result.failed
    tools = "eval/tool_selection/exact_match"
    for arm in result.arms:
        assert arm.run_dir is not None and (arm.run_dir / "continual.md").is_file()
        learnt = arm.metrics[f"stage/0_tool_selection/{tools}"]
        kept = arm.metrics[f"stage/1_arithmetic/{tools}"]
        if arm.config is not None and arm.config.algorithm.params["lora_rank"] == 8:
            assert kept < learnt  # the small adapter forgets tool selection
    outcome = result.conclusion.splitlines()[1]
    assert outcome.startswith("`algorithm.params.lora_rank=24` is best on `eval/exact_match`")
    assert "The difference exceeds the spread across seeds" in outcome


# -- injected dependencies ----------------------------------------------------------------------


class Oracle:
    """An inference client that answers the first ``right`` prompts it is asked correctly."""

    def __init__(self, answers: dict[str, str], right: int):
        self.answers, self.right, self.asked = answers, right, 0

    def generate(self, *, prompt: Any, max_tokens: int = 256, temperature: float = 0.0, stop=None):
        self.asked += 1
        text = prompt[-1]["content"] if isinstance(prompt, list) else prompt
        answer = self.answers[text] if self.asked <= self.right else "wrong"
        return f"<answer>{answer}</answer>"


def test_injected_train_inference_and_benchmark(tmp_path: Path) -> None:
    rows = [{"prompt": f"what is {i} + {i}?", "answer": str(2 * i)} for i in range(4)]
    benchmark = Benchmark(
        name="sums",
        spec=BenchmarkSpec(path="injected", tags=["test"]),
        rows=rows,
        metrics=[MetricSpec(kind="exact_match")],
        breakdown_keys=[],
    )
    seen: list[tuple[str, str | None]] = []

    def train(config: ExperimentConfig, run_dir: Path) -> RunResult:
        checkpoint = run_dir / "my-checkpoint"
        return RunResult(
            run_id="injected",
            status="completed",
            metrics={"train/steps": 1.0},
            artifacts={"final_checkpoint": str(checkpoint)},
        )

    def client(config: ExperimentConfig, checkpoint: str | None) -> Oracle:
        seen.append((config.name, checkpoint))
        return Oracle({r["prompt"]: r["answer"] for r in rows}, right=3)

    experiment = Experiment.from_overrides(
        ["eval=none", "metadata.success_metric=test/sums/exact_match"],
        train_fn=train,
        inference_factory=client,
        benchmarks=[benchmark],
    )
    result = experiment.run(tmp_path / "run")

    (arm,) = result.arms
    assert arm.status == "completed", arm.error
    assert arm.metrics["test/sums/exact_match"] == 0.75
    assert seen == [("sft-mock", str(tmp_path / "run" / "my-checkpoint"))]
    assert (tmp_path / "run" / "benchmarks" / "sums.jsonl").is_file()
    assert result.best_arm is arm and result.best_value == 0.75
    assert "it is the only configuration with a result" in result.conclusion


# -- from_file ------------------------------------------------------------------------------------


def test_from_file_by_name_or_path(workdir: Path) -> None:
    (workdir / "experiments").mkdir()  # before the first composition reads the search path
    (workdir / "experiments" / "mine.yaml").write_text(
        "# @package _global_\nname: mine\nmetadata: {hypothesis: 'It runs.'}\n"
    )
    swept = Experiment.from_file("lora_rank")
    assert swept.multirun and len(swept.plan()) == 6  # the file's sweeper params
    one = Experiment.from_file(REPO / "experiments" / "rl_arithmetic.yaml", ["seed=5"])
    assert not one.multirun
    (arm,) = one.plan()
    assert arm.config is not None and arm.config.algorithm.kind == "rl" and arm.seed == 5
    assert Experiment.from_file("lora_rank", multirun=False).plan()[0].name == "lora_rank"

    mine = Experiment.from_file("experiments/mine.yaml", ["algorithm.params.max_steps=2"])
    result = mine.run(workdir / "out")
    assert result.hypothesis == "It runs." and result.arms[0].status == "completed"

    stray = workdir / "elsewhere.yaml"
    stray.write_text("# @package _global_\nname: stray\n")
    with pytest.raises(ConfigError, match="read from the project's experiments/ folder"):
        Experiment.from_file(stray)
    with pytest.raises(ConfigError, match="no such experiment file"):
        Experiment.from_file("experiments/missing.yaml")
    with pytest.raises(ConfigError, match="experiment"):
        Experiment.from_file("lora_rnak").run(workdir / "typo")


def test_importing_the_api_stays_light() -> None:
    code = (
        "import sys, evsys; evsys.Experiment; "
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'tinker') if m in sys.modules]; "
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert re.search(r"\bExperiment\b", " ".join(__import__("evsys").__all__))
