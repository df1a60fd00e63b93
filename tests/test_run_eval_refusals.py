"""A run's eval on a hosted model that refuses some rows: each refusal costs its own row (scored as
no answer, its reason in predictions.jsonl, counted as ``eval/refused``), never the whole eval, on
the concurrent path (openai) and the one-call-at-a-time path (openai_compatible)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import flow, run_in_process
from test_frontier_runs import hosted
from vendor_servers import OpenAIServer

ROWS = 5


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
@pytest.mark.parametrize("refusal", ["refusal", "content_filter"])
def test_a_refused_row_costs_that_row_not_the_eval(workdir: Path, kind: str, refusal: str) -> None:
    with OpenAIServer([refusal]) as server:  # the first request is refused, the rest answered
        overrides = [
            "data=arithmetic",
            "algorithm.params.max_steps=2",
            f"eval.n_samples={ROWS}",
            "eval.metrics=[{kind: exact_match}]",
            f"eval.inference={flow(hosted(kind, server, model='gpt-test'))}",
        ]
        record = run_in_process(overrides, workdir / "r").record
    assert len(server.requests) == ROWS  # the refused row is not asked again
    assert record["status"] == "completed", record["error"]
    assert not any(key.startswith("eval") for key in record.get("errors") or {})
    metrics = record["metrics"]
    assert metrics["eval/refused"] == 1
    # The server answers every other sum correctly: the refused row alone scores 0.
    assert metrics["eval/exact_match"] == pytest.approx((ROWS - 1) / ROWS)
    lines = (workdir / "r" / "predictions.jsonl").read_text().splitlines()
    predictions = [json.loads(line) for line in lines]
    refused = [p for p in predictions if "refused" in p]
    assert len(refused) == 1 and refused[0]["prediction"] == ""
    assert "gpt-test" in refused[0]["refused"]
