"""gepa_prompt reports what its hosted models spent: the task model's, the reflection model's and
a judge's calls, each through the usage meter of its client, against the protocol test servers."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
from conftest import run_in_process
from openai_server import FakeChatServer
from test_gepa_prompt import learn_from_feedback
from vendor_servers import count_tokens, rubric_judge

pytest.importorskip("gepa", reason="pip install 'evsys[gepa]'")

PRICE = "{input_usd_per_mtok: 1.0, output_usd_per_mtok: 2.0}"


def hosted(server: FakeChatServer, model: str | None = None) -> str:
    """An openai_compatible client of ``server``, as a Hydra override value."""
    named = f"model: {model}, " if model else ""
    params = f"{named}base_url: '{server.base_url}', api_key_env: null, price: {PRICE}"
    return f"{{kind: openai_compatible, params: {{{params}}}}}"


def test_the_task_reflection_and_judge_models_report_their_spend(tmp_path: Path) -> None:
    from evsys.checks import reported_metrics
    from evsys.compose.compose import compose_and_validate

    with (
        FakeChatServer(policy=rubric_judge) as task,
        FakeChatServer(policy=learn_from_feedback) as reflector,
    ):
        overrides = [
            "algorithm=gepa_prompt",
            "data=arithmetic",
            "data.limit=8",
            "eval.enabled=false",
            "algorithm.params.max_metric_calls=20",
            f"algorithm.params.task_model={hosted(task, 'task-1')}",
            f"algorithm.params.reflection_model={hosted(reflector, 'reflector')}",
            "algorithm.params.verifier={kind: llm_judge, params: {judge: "
            f"{hosted(task)}, judge_model: judge-1, rubric: 'contains: 7'}}}}",
        ]
        record = run_in_process(overrides, tmp_path / "r").record
        declared = reported_metrics(compose_and_validate(overrides)[1])
    assert record["status"] == "completed", record["error"]
    metrics = record["metrics"]
    for prefix, server, model in [
        ("train/task", task, "task-1"),
        ("train/judge", task, "judge-1"),
        ("train/reflection", reflector, "reflector"),
    ]:
        calls = [r for r in server.requests if r["model"] == model]
        assert calls, prefix
        tokens_in = sum(
            count_tokens(" ".join(["", *(m["content"] for m in r["messages"])])) for r in calls
        )
        assert metrics[f"{prefix}/tokens_in"] == tokens_in, prefix
        tokens_out = metrics[f"{prefix}/tokens_out"]
        assert tokens_out > 0, prefix
        assert metrics[f"{prefix}/cost_usd"] == pytest.approx((tokens_in + 2 * tokens_out) / 1e6)
        assert 0 < metrics[f"{prefix}/latency_p50_s"] <= metrics[f"{prefix}/latency_p95_s"]
    # Validation declares them (a sweep may rank arms by cost).
    for name in metrics:
        assert any(fnmatch.fnmatchcase(name, pattern) for pattern in declared), name
