"""A judge's verdicts are kept per row, under the row's own id: an unreadable verdict is recorded
(and logged) against the row it was given on, whatever the rows look like. Hostile rows are
generated; every verdict comes from an LLM judge behind the OpenAI-compatible test server."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai_server import FakeChatServer
from vendor_servers import rubric_judge

from evsys.config import MetricSpec
from evsys.harness import ModelEvalConfig, evaluate_model
from evsys.harness.scoring import build_metrics, score_rows

TOKENS = ("alpha", "beta", "42", "ünï", "${oc.env:HOME}")
line_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
    ),
    max_size=30,
)
row_ids = st.one_of(
    st.none(),
    st.integers(-5, 5),
    st.sampled_from(["a", "a", "${oc.env:HOME}", "../../etc/passwd", "", "ü"]),
    line_text,
)


@st.composite
def judged_rows(draw: Any) -> tuple[dict[str, Any], str]:
    """A harbor llm_judge task (its id anything, a rubric the judge can read or not, an answer
    or none) and the completion to judge."""
    readable = draw(st.booleans())
    token = draw(st.sampled_from(TOKENS))
    rubric = f"contains: {token}" if readable else draw(st.sampled_from(["Be polite.", "?", "x"]))
    row: dict[str, Any] = {
        "id": draw(row_ids),
        "prompt": draw(line_text.filter(lambda text: "Response:" not in text)),
        "verifier": {"kind": "llm_judge", "judge_model": "judge-1", "rubric": rubric},
    }
    if draw(st.booleans()):
        row["answer"] = draw(st.sampled_from(TOKENS))
    completion = draw(line_text) + (token if draw(st.booleans()) else "")
    return row, completion


@pytest.fixture(scope="module")
def judge_server() -> Any:
    with FakeChatServer(policy=rubric_judge) as server:
        yield server


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(judged_rows(), min_size=1, max_size=6))
def test_each_rows_verdict_is_kept_against_that_row(
    judge_server: FakeChatServer, caplog: pytest.LogCaptureFixture, drawn: list[Any]
) -> None:
    rows = [row for row, _ in drawn]
    judge = {"kind": "openai_compatible", "params": {"base_url": judge_server.base_url}}
    metric = MetricSpec(kind="pass_rate", params={"judge": {**judge, "params": {
        **judge["params"], "api_key_env": None, "model": "unused"}}})  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="evsys.task_verifiers"):
        scored = score_rows(rows, [[c] for _, c in drawn], built=build_metrics([metric]))

    warned = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    expected_total = 0.0
    for index, ((row, completion), record) in enumerate(zip(drawn, scored.records, strict=True)):
        assert record["index"] == index and record["id"] == row["id"]
        verdict = record["verdicts"]["pass_rate"]
        rubric = row["verifier"]["rubric"]
        if rubric.startswith("contains: "):
            reward = float(rubric.removeprefix("contains: ") in completion)
            assert verdict["reward"] == reward and "verdict_error" not in verdict
        else:
            reward = 0.0
            assert (
                verdict["reward"] == 0.0 and "no <answer>SCORE</answer>" in verdict["verdict_error"]
            )
            # Logged against this row's own id, not the first task that shares its rubric.
            assert any(m.startswith(f"task {row['id']!r}: ") for m in warned), (row, warned)
        expected_total += reward
    for message in warned:  # and no warning names a row whose verdict was readable
        named = [row for row, _ in drawn if message.startswith(f"task {row['id']!r}: ")]
        assert any(not row["verifier"]["rubric"].startswith("contains: ") for row in named)
    assert scored.metrics["pass_rate"] == pytest.approx(expected_total / len(rows))
    assert not any(name.startswith("pass@") for name in scored.metrics) or all(
        "answer" in row for row in rows
    )


def test_unreadable_verdicts_are_listed_by_row_in_the_summary(
    judge_server: FakeChatServer, tmp_path: Path
) -> None:
    ids = ["a|b", "line\nbreak", 7, "ok"]
    rubrics = ["Be polite.", "?", "Be brief.", "contains: 2"]
    rows = [
        {"id": row_id, "prompt": "What is 1 + 1?", "verifier": {
            "kind": "llm_judge", "judge_model": "judge-1", "rubric": rubric}}
        for row_id, rubric in zip(ids, rubrics, strict=True)
    ]  # fmt: skip
    client = {"base_url": judge_server.base_url, "api_key_env": None}
    judge = {"kind": "openai_compatible", "params": client}
    artifacts = evaluate_model(
        ModelEvalConfig(
            output_dir=str(tmp_path / "out"),
            inference_kind="openai_compatible",
            model_name="model-1",
            client_params=client,
            metrics=[MetricSpec(kind="pass_rate", params={"judge": judge})],
        ),
        rows=rows,
    )
    listed = artifacts.summary.unreadable_verdicts
    assert [(v["index"], v["id"]) for v in listed] == [(0, "a|b"), (1, "line\nbreak"), (2, 7)]
    assert all(v["metric"] == "pass_rate" and "no <answer>" in v["error"] for v in listed)
    assert artifacts.summary.metrics["pass_rate"] == 0.25
    summary_md = (tmp_path / "out" / "summary.md").read_text()
    table = summary_md.split("## Verdicts that could not be read", 1)[1].split("##", 1)[0]
    assert "| 0 | a\\|b | pass_rate |" in table and "| 1 | line break | pass_rate |" in table
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["unreadable_verdicts"] == listed
