"""metadata.benchmark: val benchmarks scored in the loop, test benchmarks after, baselines before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, metrics_lines, run_evsys, run_in_process

from evsys.compose.compose import compose_and_validate

VALIDATION = REPO / "data" / "tool_selection" / "validation"
BENCHMARK = REPO / "data" / "tool_selection" / "benchmark"


def benchmarks(*entries: str) -> str:
    return f"+metadata.benchmark=[{', '.join(entries)}]"


VAL = f"{{path: '{VALIDATION}', tags: [val], run_every: 10}}"
TEST = f"{{path: '{BENCHMARK}'}}"


def test_val_is_scored_in_the_loop_and_test_after_training(workdir: Path) -> None:
    overrides = ["algorithm.params.max_steps=40", "eval.baseline=true", benchmarks(VAL, TEST)]
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]

    # The val curve: every 10 steps, on the live policy, so it climbs as the policy learns.
    lines = metrics_lines(workdir / "r")
    curve = [
        (m["step"], m[key]) for m in lines if (key := "val/tool_selection_val/exact_match") in m
    ]
    assert [step for step, _ in curve] == [10, 20, 30, 40]
    assert curve[-1][1] > curve[0][1]
    assert record["metrics"]["val/tool_selection_val/exact_match"] == curve[-1][1]

    # The test benchmark: once, after training, broken down by toolkit, predictions kept.
    metrics = record["metrics"]
    overall = metrics["test/tool_selection/exact_match"]
    parts = {k: v for k, v in metrics.items() if k.startswith("test/tool_selection/exact_match/")}
    assert set(parts) == {
        f"test/tool_selection/exact_match/toolkit={t}"
        for t in ("calendar", "github", "gmail", "slack", "weather")
    }
    assert min(parts.values()) <= overall <= max(parts.values())
    predictions = (workdir / "r/benchmarks/tool_selection.jsonl").read_text().splitlines()
    assert len(predictions) == 40
    assert not any(k.startswith("test/") for m in lines[:-1] for k in m)  # never during training

    # The baseline: the same scores on the starting model, before any step.
    assert metrics["baseline/test/tool_selection/exact_match"] < overall
    assert metrics["baseline/eval/exact_match"] < metrics["eval/exact_match"]
    assert lines[0]["step"] == 0 and "baseline/eval/exact_match" in lines[0]


def test_the_summary_shows_before_and_after(workdir: Path) -> None:
    result = run_evsys("eval.baseline=true", "hydra.run.dir=out", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "before and after training:" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "eval/exact_match" in line)
    before, after, change = row.split()[1:]
    assert float(before) < float(after) and change.startswith("+")
    assert (workdir / "out" / "baseline" / "predictions.jsonl").is_file()


def test_plain_prompt_rows_and_a_metadata_name_work(workdir: Path) -> None:
    bench = workdir / "mini"
    bench.mkdir()
    rows = [{"prompt": "Email Dana the report is ready", "answer": "GMAIL_SEND_EMAIL", "k": "a"}]
    (bench / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (bench / "metadata.yaml").write_text("name: mini\nbreakdown_keys: [k]\n")
    record = run_in_process(
        [
            "algorithm.params.max_steps=2",
            "eval.enabled=false",
            benchmarks("{path: mini, metrics: [{kind: exact_match}]}"),
        ],
        workdir / "r",
    ).record
    assert record["status"] == "completed", record["error"]
    assert {"test/mini/exact_match", "test/mini/exact_match/k=a"} <= set(record["metrics"])


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "no benchmark at"),
        (lambda d: (d / "tasks.jsonl").write_text('{"task_id": "t1"\n'), "tasks.jsonl:1"),
        (lambda d: (d / "tasks.jsonl").write_text('{"inputs": {"x": 1}}\n'), "no prompt"),
        (
            lambda d: [
                (d / "tasks.jsonl").write_text('{"prompt": "p", "answer": "a"}\n'),
                (d / "metadata.yaml").write_text("name: [unclosed\n"),
            ],
            "metadata.yaml is not valid YAML",
        ),
    ],
)
def test_a_broken_benchmark_fails_before_training(workdir: Path, setup: Any, message: str) -> None:
    bench = workdir / "bench"
    bench.mkdir()
    setup(bench)
    result = run_evsys(benchmarks("{path: bench}"), "hydra.run.dir=out", cwd=workdir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "metadata.benchmark[0]" in result.stdout + result.stderr
    assert message in result.stdout + result.stderr
    assert not (workdir / "out" / "checkpoints").exists()  # nothing trained


def test_val_needs_a_cadence_and_test_must_not_have_one() -> None:
    from evsys.errors import ConfigError

    for entry, message in [
        ("{path: x, tags: [val]}", "needs `run_every`"),
        ("{path: x, run_every: 5}", "scored once after training"),
    ]:
        with pytest.raises(ConfigError, match=message):
            compose_and_validate([benchmarks(entry)])
