"""Hosted clients and LLM judges inside runs: a run's eval, benchmark baselines, judged
benchmarks, `evsys eval model --inference-kind claude`, and RL rewarded by an LLM judge on the
mock backend, each against the local servers of tests/vendor_servers.py; their usage metrics,
declared where validation lists what a run reports."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, flow, judged_task, metrics_lines, run_evsys, run_in_process
from vendor_servers import AnthropicServer, GeminiServer, OpenAIServer, rubric_judge

from evsys.checks import reported_metrics
from evsys.compose.compose import compose_and_validate
from evsys.errors import DataError
from evsys.registry import VERIFIERS

PRICE = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0}
USAGE = ("cost_usd", "latency_p50_s", "latency_p95_s", "tokens_in", "tokens_out")
VERDICT_WORDS = 7  # "Checked the response against the rubric. <answer>1</answer>"


def hosted(kind: str, server: Any, **params: Any) -> dict[str, Any]:
    """The {kind, params} of a hosted client pointed at ``server``."""
    return {
        "kind": kind,
        "params": {"base_url": server.base_url, "api_key_env": None, "price": PRICE, **params},
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- the llm_judge verifier --------------------------------------------------------------------


def test_the_llm_judge_verifier_scores_by_its_rubric_and_never_crashes_on_a_verdict() -> None:
    with AnthropicServer(policy=rubric_judge) as server:
        judge = hosted("claude", server, model="judge-1")
        strict = VERIFIERS.build(
            "llm_judge", {"judge": judge, "rubric": "contains: <answer>5</answer>"}
        )
        vague = VERIFIERS.build("llm_judge", {"judge": judge, "rubric": "Is it polite?"})
        right = strict.verify(prompt="What is 2 + 3?", completion="<answer>5</answer>")
        wrong = strict.verify(prompt="What is 2 + 3?", completion="<answer>6</answer>")
        unreadable = vague.verify(prompt="What is 2 + 3?", completion="<answer>5</answer>")
    assert (right.reward, wrong.reward, unreadable.reward) == (1.0, 0.0, 0.0)
    assert "no <answer>SCORE</answer>" in unreadable.info["verdict_error"]
    assert {r["model"] for r in server.requests} == {"judge-1"}
    assert len(strict.calls()) == 2 and all(c.cost_usd for c in strict.calls())

    no_rubric = VERIFIERS.build("llm_judge", {"judge": judge})
    with pytest.raises(DataError, match="has no rubric to judge it by"):
        no_rubric.verify(prompt="p", completion="c", target={"id": "r1", "prompt": "p"})


def test_mock_rl_is_rewarded_by_an_llm_judge(workdir: Path) -> None:
    tasks = write_jsonl(workdir / "tasks.jsonl", [judged_task(a, a + 3) for a in (2, 11, 25, 40)])
    with GeminiServer(policy=rubric_judge) as server:
        verifier = {"kind": "llm_judge", "params": {"judge": hosted("gemini", server)}}
        overrides = [
            "algorithm=rl",
            "data.source_kind=jsonl",
            f"data.path={tasks}",
            "data.eval_path=null",
            "data.transforms=[]",
            "eval.enabled=false",
            "algorithm.params.batch_size=2",
            "algorithm.params.group_size=4",
            "algorithm.params.max_steps=8",
            "algorithm.params.learning_rate=1e-4",
            f"algorithm.params.verifier={flow(verifier)}",
            "metadata.success_metric=train/judge/cost_usd",  # declared: validation accepts it
        ]
        record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    rewards = [
        line["train/reward_mean"]
        for line in metrics_lines(workdir / "r")
        if "train/reward_mean" in line
    ]
    assert rewards[-1] > rewards[0]  # the judge's verdicts teach the policy its answers
    # Every rollout was judged: 8 steps × 2 prompts × 4 samples, each verdict 7 words.
    calls = 8 * 2 * 4
    assert len(server.requests) == calls and {r["model"] for r in server.requests} == {"judge-1"}
    metrics = record["metrics"]
    assert metrics["train/judge/tokens_out"] == calls * VERDICT_WORDS
    assert metrics["train/judge/cost_usd"] > calls * VERDICT_WORDS * 2 / 1e6  # + the prompts
    assert 0 < metrics["train/judge/latency_p50_s"] <= metrics["train/judge/latency_p95_s"]


# -- a run: eval, baselines and a judged benchmark on hosted clients ------------------------------


def test_hosted_clients_in_a_runs_eval_baselines_and_judged_benchmark(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRONTIER_TEST_KEY", "sk-run-secret")
    arithmetic = [
        json.loads(x) for x in (REPO / "data/arithmetic/test.jsonl").read_text().splitlines()
    ]
    write_jsonl(workdir / "arith" / "tasks.jsonl", arithmetic[:4])
    write_jsonl(workdir / "judged" / "tasks.jsonl", [judged_task(1, 2), judged_task(3, 4)])
    servers = (
        OpenAIServer(api_key="sk-run-secret"),
        AnthropicServer(api_key="sk-run-secret"),
        GeminiServer(policy=rubric_judge),
    )
    with servers[0] as openai, servers[1] as anthropic, servers[2] as gemini:
        keyed = {"api_key_env": "FRONTIER_TEST_KEY"}
        eval_client = hosted("openai", openai, model="gpt-test", **keyed)
        baseline = {**hosted("claude", anthropic, model="claude-test", **keyed), "name": "claude"}
        judge = hosted("gemini", gemini)
        benchmarks = [
            {"path": "arith", "models": [baseline]},
            {"path": "judged", "metrics": [{"kind": "pass_rate", "params": {"judge": judge}}]},
        ]
        overrides = [
            "data=arithmetic",
            "algorithm.params.max_steps=2",
            "eval.n_samples=5",
            "eval.metrics=[{kind: exact_match}]",
            f"eval.inference={flow(eval_client)}",
            f"+metadata.benchmark={flow(benchmarks)}",
        ]
        record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    metrics = record["metrics"]
    # The hosted model answers the arithmetic itself: it scores 1 wherever it generates.
    assert metrics["eval/exact_match"] == 1.0 and metrics["test/arith/exact_match@claude"] == 1.0
    assert metrics["test/judged/pass_rate"] == 1.0  # the sums it gives meet the rubrics
    for prefix, suffix in [
        ("eval", ""),
        ("test/arith", ""),
        ("test/arith", "@claude"),
        ("test/judged", ""),
        ("test/judged/judge", ""),
    ]:
        assert all(f"{prefix}/{name}{suffix}" in metrics for name in USAGE), prefix + suffix
    # 5 eval rows and 4 + 2 benchmark tasks through the eval client; 4 through the baseline.
    assert metrics["eval/tokens_out"] == 5 and metrics["test/arith/tokens_out@claude"] == 4
    assert (
        len(gemini.requests) == 2 and metrics["test/judged/judge/tokens_out"] == 2 * VERDICT_WORDS
    )
    # Validation declares every one of them (a sweep may rank arms by cost).
    declared = reported_metrics(compose_and_validate(overrides)[1])
    usage_keys = [k for k in metrics if k.rsplit("/", 1)[-1].split("@")[0] in USAGE]
    for key in usage_keys:
        assert any(fnmatch.fnmatchcase(key, p) for p in declared), key
    # The key went to the servers, and into no file of the run.
    headers = {k.lower(): v for k, v in openai.requests[0]["headers"].items()}
    assert headers["authorization"] == "Bearer sk-run-secret"
    written = [p for p in (workdir / "r").rglob("*") if p.is_file()]
    assert written and not any(b"sk-run-secret" in p.read_bytes() for p in written)


def test_evsys_eval_model_with_a_hosted_client(workdir: Path) -> None:
    dataset = REPO / "data" / "arithmetic" / "test.jsonl"
    with AnthropicServer(["429", "529"], api_key="sk-cli-secret") as server:
        done = run_evsys(
            "eval", "model",
            "--dataset", str(dataset),
            "--output-dir", "out",
            "--inference-kind", "claude",
            "--model-name", "claude-haiku-4-5",
            "--base-url", server.base_url,
            "--api-key-env", "CLI_CLAUDE_KEY",
            "--backoff", "0.01",
            "--limit", "4",
            cwd=workdir,
            module=False,
            env={"CLI_CLAUDE_KEY": "sk-cli-secret"},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| exact_match | 1 |" in done.stdout and "2 retried attempts" in done.stdout
    assert "| cost_usd |" in done.stdout and "| latency_p50_s |" in done.stdout
    summary = json.loads((workdir / "out" / "summary.json").read_text())
    # The listed price of claude-haiku-4-5: $1 in, $5 out per million tokens.
    tokens_in = sum(
        len(json.loads(x)["prompt"].split()) for x in dataset.read_text().splitlines()[:4]
    )
    assert summary["metrics"]["cost_usd"] == pytest.approx((tokens_in * 1 + 4 * 5) / 1e6)
    assert "sk-cli-secret" not in done.stdout + done.stderr
    assert "sk-cli-secret" not in (workdir / "out" / "predictions.jsonl").read_text()


def test_a_missing_key_variable_is_bad_input(workdir: Path) -> None:
    done = run_evsys(
        "eval", "model", "--dataset", str(REPO / "data/arithmetic/test.jsonl"),
        "--inference-kind", "gemini", "--model-name", "gemini-2.5-flash",
        "--api-key-env", "NO_SUCH_KEY_VARIABLE", "--output-dir", "out",
        cwd=workdir, module=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "NO_SUCH_KEY_VARIABLE, which is not set" in done.stderr
    assert "Traceback" not in done.stderr and not (workdir / "out").exists()
