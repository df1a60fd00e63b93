"""Usage of ``openai_compatible`` (tokens, latency, cost), and an LLM judge's usage reported by
``evsys eval model`` apart from the scored model's; against the OpenAI-protocol test double."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_evsys
from openai_server import FakeChatServer
from vendor_servers import count_tokens, rubric_judge

from evsys.clients.usage import Price, UsageMeter, lookup_price, summarize, usage_since
from evsys.errors import ConfigError
from evsys.harness import ModelEvalConfig, evaluate_model
from evsys.harness.evaluate import build_client
from evsys.registry import INFERENCE_CLIENTS

ARITHMETIC = REPO / "data" / "arithmetic" / "test.jsonl"
PRICE = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0}
JUDGE_PRICE = {"input_usd_per_mtok": 3.0, "output_usd_per_mtok": 5.0}


def cost(tokens_in: int, tokens_out: int, price: dict[str, float] = PRICE) -> float:
    return (
        tokens_in * price["input_usd_per_mtok"] + tokens_out * price["output_usd_per_mtok"]
    ) / 1e6


def compatible(server: FakeChatServer, **params: Any) -> Any:
    settings = {"model": "model-1", "base_url": server.base_url, "api_key_env": None, **params}
    return INFERENCE_CLIENTS.build("openai_compatible", settings, sleep=lambda s: None)


class UncountedServer(FakeChatServer):
    """An endpoint that does not count tokens: ``usage`` left out, or null."""

    def __init__(self, usage: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.usage = usage

    def respond(self, request: dict[str, Any], texts: list[str], finish: list[str]) -> Any:
        body = super().respond(request, texts, finish)
        if self.usage == "missing":
            del body["usage"]
        else:
            body["usage"] = None
        return body


# -- the client's meter ------------------------------------------------------------------------


def test_every_answered_call_is_metered_with_the_responses_usage() -> None:
    with FakeChatServer(["500"]) as server:
        model = compatible(server, price=PRICE, backoff_s=0)
        assert model.generate(prompt="What is 19 + 23?", max_tokens=16) == "<answer>42</answer>"
        since = model.usage.mark()
        model.generate(
            prompt=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is 1 + 2?"},
            ]
        )
    assert len(server.requests) == 3  # the 500 was retried: a failed attempt is no call
    calls = model.usage.calls()
    # The server counts words: "What is 19 + 23?" is 5, "Be brief." 2 more; an answer is 1.
    assert [(c.tokens_in, c.tokens_out) for c in calls] == [(5, 1), (7, 1)]
    assert calls[1].cost_usd == pytest.approx(cost(7, 1))
    assert all(c.latency_s > 0 for c in calls)
    usage = usage_since(model, since, prefix="eval")
    assert usage["eval/cost_usd"] == pytest.approx(cost(7, 1))
    assert usage["eval/tokens_out"] == 1.0 and usage["eval/tokens_in"] == 7.0
    assert usage["eval/latency_p50_s"] == usage["eval/latency_p95_s"] == calls[1].latency_s


@pytest.mark.parametrize(
    ("model", "vendor", "listed"),
    [
        ("gpt-4o-mini-2024-07-18", "openai", "gpt-4o-mini"),  # a dated id: its base's price
        ("anthropic/claude-haiku-4-5", "claude", "claude-haiku-4-5"),  # a proxy's model id
    ],
)
def test_a_listed_model_is_priced_from_the_table(model: str, vendor: str, listed: str) -> None:
    with FakeChatServer() as server:
        client = compatible(server, model=model)
        client.generate(prompt="What is 2 + 2?")
    price = lookup_price(vendor, listed)
    assert price is not None
    (call,) = client.usage.calls()
    assert call.cost_usd == pytest.approx(price.cost(5, 1)) and call.cost_usd > 0


def test_an_unpriced_model_reports_no_cost_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with FakeChatServer() as server, caplog.at_level(logging.WARNING):
        client = compatible(server, model="my-vllm-adapter")
        client.generate(prompt="What is 2 + 2?")
    usage = usage_since(client, 0)
    assert "cost_usd" not in usage  # never a made-up 0
    assert usage["tokens_out"] == 1.0 and usage["latency_p95_s"] > 0
    assert "no price for model 'my-vllm-adapter'" in caplog.text


@pytest.mark.parametrize("usage", ["missing", "null"])
def test_an_endpoint_that_counts_no_tokens_reports_latency_alone(usage: str) -> None:
    with UncountedServer(usage) as server:
        client = compatible(server, price=PRICE)
        assert client.generate(prompt="What is 2 + 2?") == "<answer>4</answer>"
    (call,) = client.usage.calls()
    assert (call.tokens_in, call.tokens_out, call.cost_usd) == (None, None, None)
    assert set(usage_since(client, 0)) == {"latency_p50_s", "latency_p95_s", "refused"}


def test_calls_of_unknown_tokens_make_the_sum_unknown() -> None:
    meter = UsageMeter(Price(**PRICE))
    meter.record(10, 4, 0.5)
    assert summarize(meter.calls())["tokens_out"] == 4.0
    assert summarize(meter.calls())["tokens_in"] == 10.0
    meter.record(None, None, 1.5)
    # A partial sum would undercount: neither tokens_out nor cost_usd, latency of every call.
    assert summarize(meter.calls()) == pytest.approx(
        {"latency_p50_s": 1.0, "latency_p95_s": 1.45, "refused": 0.0}
    )


def test_a_bad_price_is_a_config_error() -> None:
    config = ModelEvalConfig(
        inference_kind="openai_compatible",
        model_name="m",
        client_params={"price": {"input_usd_per_mtok": -1, "output_usd_per_mtok": 1}},
    )
    with pytest.raises(ConfigError) as info:
        build_client(config)
    assert [p.path for p in info.value.problems] == ["client_params.price.input_usd_per_mtok"]


def test_the_same_eval_costs_the_same_through_the_openai_sdk(tmp_path: Path) -> None:
    """openai_compatible (the standard library) and openai (the real SDK) meter alike."""
    pytest.importorskip("openai")
    metrics = {}
    with FakeChatServer() as server:
        for kind in ("openai_compatible", "openai"):
            metrics[kind] = evaluate_model(
                ModelEvalConfig(
                    dataset=str(ARITHMETIC),
                    inference_kind=kind,
                    model_name="model-1",
                    client_params={
                        "base_url": server.base_url,
                        "api_key_env": None,
                        "price": PRICE,
                    },
                    limit=5,
                    backoff_s=0,
                )
            ).summary.metrics
    prompts = [json.loads(line)["prompt"] for line in ARITHMETIC.read_text().splitlines()[:5]]
    tokens_in = sum(count_tokens(p) for p in prompts)
    for kind, scores in metrics.items():
        assert scores["exact_match"] == 1.0, kind
        assert scores["tokens_out"] == 5.0, kind
        assert scores["cost_usd"] == pytest.approx(cost(tokens_in, 5)), kind
        assert 0 < scores["latency_p50_s"] <= scores["latency_p95_s"], kind


# -- evsys eval model: the judge's usage apart from the model's ---------------------------------


def judged_tasks(path: Path) -> list[dict[str, Any]]:
    """Arithmetic questions judged by the rubric "contains: <the sum>", in two groups."""
    tasks = []
    for index, line in enumerate(ARITHMETIC.read_text().splitlines()[:4]):
        row = json.loads(line)
        tasks.append(
            {
                "task_id": row["id"],
                "instruction": row["prompt"],
                "verifier": {
                    "kind": "llm_judge",
                    "judge_model": "judge-1",
                    "rubric": f"contains: {row['answer']}",
                },
                "metadata": {"answer": row["answer"], "group": "ab"[index % 2]},
            }
        )
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    return tasks


def words_sent(request: dict[str, Any]) -> int:
    return count_tokens(" ".join(["", *(m["content"] for m in request["messages"])]))


def test_eval_model_reports_the_judges_usage_under_its_own_prefix(workdir: Path) -> None:
    tasks = judged_tasks(workdir / "judged.jsonl")
    with FakeChatServer(policy=rubric_judge) as server:
        judge = {
            "kind": "pass_rate",
            "params": {
                "judge": {
                    "kind": "openai_compatible",
                    "params": {
                        "base_url": server.base_url,
                        "api_key_env": None,
                        "price": JUDGE_PRICE,
                    },
                }
            },
        }
        done = run_evsys(
            "eval", "model",
            "--dataset", "judged.jsonl",
            "--output-dir", "out",
            "--inference-kind", "openai_compatible",
            "--model-name", "model-1",
            "--base-url", server.base_url,
            "--param", f"price={json.dumps(PRICE)}",
            "--metric", "exact_match",
            "--metric", json.dumps(judge),
            "--breakdown-keys", "group",
            cwd=workdir,
            module=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    asked = [r for r in server.requests if r["model"] == "judge-1"]
    scored = [r for r in server.requests if r["model"] == "model-1"]
    # One verdict per task: the breakdowns by group reuse the headline's verdicts.
    assert len(asked) == len(scored) == len(tasks)
    metrics = json.loads((workdir / "out/summary.json").read_text())["metrics"]
    assert metrics["pass_rate"] == metrics["exact_match"] == 1.0
    assert metrics["pass_rate/group=a"] == 1.0
    # The scored model's calls: one word per answer, at its own price.
    tokens_in = sum(words_sent(r) for r in scored)
    assert metrics["tokens_out"] == 4.0
    assert metrics["cost_usd"] == pytest.approx(cost(tokens_in, 4))
    # The judge's calls, apart: "Checked the response against the rubric. <answer>1</answer>".
    judge_in = sum(words_sent(r) for r in asked)
    assert metrics["judge/tokens_out"] == 7.0 * len(tasks)
    assert metrics["judge/cost_usd"] == pytest.approx(cost(judge_in, 7 * len(tasks), JUDGE_PRICE))
    assert 0 < metrics["judge/latency_p50_s"] <= metrics["judge/latency_p95_s"]
    assert not any(name.startswith("judge/") and "=" in name for name in metrics)
    # Said in the command's output, in a section of its own.
    judge_section = done.stdout.split("## Judge usage", 1)[1].split("##", 1)[0]
    assert "| judge/cost_usd |" in judge_section and "| judge/tokens_out | 28 |" in judge_section
    assert "| cost_usd |" in done.stdout.split("## Judge usage", 1)[0]


def test_a_model_scored_without_a_judge_reports_no_judge_usage(tmp_path: Path) -> None:
    with FakeChatServer() as server:
        summary = evaluate_model(
            ModelEvalConfig(
                dataset=str(ARITHMETIC),
                output_dir=str(tmp_path / "out"),
                inference_kind="openai_compatible",
                model_name="gpt-4o-mini",
                client_params={"base_url": server.base_url, "api_key_env": None},
                limit=3,
            )
        ).summary
    assert summary.metrics["cost_usd"] > 0  # priced from the table
    assert not any(name.startswith("judge/") for name in summary.metrics)
    assert "Judge usage" not in (tmp_path / "out" / "summary.md").read_text()


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ("{kind: pass_rate", "--metric: not a YAML mapping"),
        ("[pass_rate]", "--metric[0].kind: unknown metric '[pass_rate]'"),
        ("{params: {}}", "--metric[0].kind: required value is missing"),
        ("{kind: pass_rate, params: {judge: {kind: nope}}}", "--metric[0].params.judge.kind"),
        ("{kind: pass_rate, params: {jugde: {kind: claude}}}", "jugde"),
        ("exact_mtch", "did you mean 'exact_match'"),
    ],
)
def test_a_bad_metric_exits_2_before_any_call(workdir: Path, metric: str, message: str) -> None:
    with FakeChatServer() as server:
        done = run_evsys(
            "eval", "model",
            "--dataset", str(ARITHMETIC),
            "--output-dir", "out",
            "--inference-kind", "openai_compatible",
            "--model-name", "m",
            "--base-url", server.base_url,
            "--metric", metric,
            cwd=workdir,
            module=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not server.requests and not (workdir / "out").exists()
