"""Refusals, content filters and safety blocks, and malformed bodies, through every hosted client
(``openai``, ``claude``, ``gemini`` on their real SDKs, and ``openai_compatible``) against servers
that answer them in the vendor's wire format (tests/vendor_bodies.py).

A refusal is its own outcome (Refused): not retried, metered, counted apart in the eval and
visible in its predictions; a malformed body is retried by the one shared policy; a safety block
is never taken for a malformed body. Hypothesis makes each row's server behave in a sequence of
ways (ok, refusal, malformed, 500, 429, …) and the eval's counts and metering are checked.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_evsys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vendor_bodies import BODIES, REFUSAL_TEXT, REFUSALS
from vendor_servers import SERVERS, OpenAIServer, VendorServer, count_tokens, rubric_judge

from evsys.clients.refusals import MAX_REASON_CHARS, openai_choice
from evsys.harness import ModelEvalConfig, evaluate_model
from evsys.harness.evaluate import build_client
from evsys.harness.retry import Refused, RetriesExhausted, RetryReport
from evsys.registry import INFERENCE_CLIENTS, VERIFIERS

KINDS = ["claude", "gemini", "openai", "openai_compatible"]
PRICE = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0}
TRANSIENT = ["500", "429", "malformed", "wrong_shape", "hollow"]
MAX_ATTEMPTS = 3


def server_class(kind: str) -> type[VendorServer]:
    return OpenAIServer if kind == "openai_compatible" else SERVERS[kind]


def refusals_of(kind: str) -> list[str]:
    """The refusals the server of ``kind`` speaks, in its vendor's wire format."""
    return sorted(REFUSALS & set(BODIES[server_class(kind).protocol]))


def build(kind: str, server: VendorServer, sleeps: list[float], **params: Any) -> Any:
    settings = {
        "model": "model-1",
        "base_url": server.base_url,
        "api_key_env": None,
        "backoff_s": 0.5,
        "price": PRICE,
        **params,
    }
    return INFERENCE_CLIENTS.build(kind, settings, sleep=sleeps.append)


CASES = [(kind, refusal) for kind in KINDS for refusal in refusals_of(kind)]


@pytest.mark.parametrize(("kind", "refusal"), CASES)
def test_a_refusal_is_its_own_outcome_metered_and_never_retried(kind: str, refusal: str) -> None:
    sleeps: list[float] = []
    with server_class(kind)([refusal]) as server:
        client = build(kind, server, sleeps)
        with pytest.raises(Refused) as info:
            client.generate(prompt="What is 3 + 4?")
        # The next call is answered: a refusal breaks nothing.
        assert client.generate(prompt="What is 3 + 4?") == "<answer>7</answer>"
    assert len(server.requests) == 2 and sleeps == []  # asked once: no retry, no backoff
    refused = info.value
    assert refused.completions == [None] and list(refused.reasons) == [0]
    why = refused.reasons[0]
    expected = {
        "refusal": {"claude": "stop_reason refusal", "gemini": "finish_reason SAFETY"},
        "content_filter": {},
        "blocked": {"gemini": "prompt blocked (SAFETY)"},
    }[refusal].get(kind, f"refusal: {REFUSAL_TEXT}" if refusal == "refusal" else refusal)
    assert expected in why and "model-1" in why
    # Metered like an answered call: the prompt's 5 words in, the refusal's words out (none
    # where the prompt was blocked before an answer).
    first = client.usage.calls()[0]
    out = 0 if refusal == "blocked" else count_tokens(REFUSAL_TEXT)
    assert (first.tokens_in, first.tokens_out) == (5, out)
    assert first.cost_usd == pytest.approx((5 * 1.0 + out * 2.0) / 1e6)
    assert len(client.usage.calls()) == 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("failures", [["hollow", "malformed"], ["wrong_shape", "hollow"]])
def test_every_client_retries_a_malformed_body_alike(kind: str, failures: list[str]) -> None:
    sleeps: list[float] = []
    with server_class(kind)(failures) as server:
        client = build(kind, server, sleeps)
        assert client.generate(prompt="What is 3 + 4?") == "<answer>7</answer>"
    assert len(server.requests) == 3 and len(sleeps) == 2 and sleeps[1] > sleeps[0]
    assert len(client.usage.calls()) == 1  # a malformed body is no answer: not metered

    with server_class(kind)(["hollow"] * 2) as server, pytest.raises(RetriesExhausted) as info:
        build(kind, server, sleeps, max_attempts=2).generate(prompt="What is 3 + 4?")
    assert info.value.attempts == 2 and "MalformedResponse" in info.value.error
    assert not isinstance(info.value, Refused)


@pytest.mark.parametrize("kind", ["openai", "gemini"])
def test_a_request_of_n_samples_refused_whole(kind: str) -> None:
    refusal = refusals_of(kind)[0]
    with server_class(kind)([refusal]) as server:
        client = build(kind, server, [])
        with pytest.raises(Refused) as info:
            client.sample(prompt="What is 3 + 4?", n=3, temperature=1.0)
    assert len(server.requests) == 1
    assert info.value.completions == [None] * 3 and list(info.value.reasons) == [0, 1, 2]


class PartlyRefusing(OpenAIServer):
    """Refuses the second of the n samples of every request (OpenAI's ``message.refusal``)."""

    def respond(self, request: dict[str, Any], texts: list[str], finish: list[str]) -> Any:
        body = super().respond(request, texts, finish)
        if len(body["choices"]) > 1:
            body["choices"][1]["message"].update(content=None, refusal="No.")
        return body


def test_the_samples_given_beside_a_refused_one_are_scored(tmp_path: Path) -> None:
    rows = [{"id": "sum", "prompt": "What is 3 + 4?", "answer": "7"}]
    with PartlyRefusing() as server:
        artifacts = evaluate_model(
            ModelEvalConfig(
                output_dir=str(tmp_path),
                inference_kind="openai",
                model_name="model-1",
                client_params={"base_url": server.base_url, "api_key_env": None},
                num_samples=3,
                pass_at=[1, 3],
            ),
            rows=rows,
        )
    (record,) = artifacts.records
    assert record["predictions"] == ["<answer>7</answer>", None, "<answer>7</answer>"]
    assert record["refused"] == {1: "openai model-1: refusal: No."}
    report = artifacts.summary.retry_report
    assert (report.total_refused, report.total_failures, len(server.requests)) == (1, 0, 1)
    # A refused sample scores as wrong: pass@1 is 2 of 3, pass@3 is met.
    metrics = artifacts.summary.metrics
    assert metrics["pass@1"] == pytest.approx(2 / 3) and metrics["pass@3"] == 1.0


def test_refused_survives_pickling() -> None:
    refused = pickle.loads(pickle.dumps(Refused({1: "stop_reason refusal"}, ["a", None])))
    assert (refused.reasons, refused.completions, refused.attempts) == (
        {1: "stop_reason refusal"},
        ["a", None],
        1,
    )


FINISH = st.sampled_from([None, "stop", "length", "content_filter", "tool_calls", "whatever"])


@settings(max_examples=300)
@given(
    finish=FINISH,
    content=st.none() | st.text(max_size=20),
    refusal=st.none() | st.text(max_size=300),
    tool_calls=st.none() | st.just([{"id": "call-1"}]),
)
def test_an_openai_choice_is_an_answer_a_refusal_or_malformed(
    finish: str | None, content: str | None, refusal: str | None, tool_calls: Any
) -> None:
    said_no = finish == "content_filter" or bool(refusal and refusal.strip())
    try:
        text, why = openai_choice(finish, content, refusal, tool_calls)
    except ValueError:
        # Malformed only when nothing explains the missing content.
        assert not said_no and content is None and not tool_calls and finish != "length"
        return
    assert (why is not None) == said_no
    if why is not None:
        assert text == "" and len(why) <= len("refusal: ") + MAX_REASON_CHARS
    else:
        assert text == (content or "")


# -- generated server behaviours: the eval's counts and its metering -------------------------------


def row_script(kind: str) -> st.SearchStrategy[list[str]]:
    """What one row's server does, call by call: up to MAX_ATTEMPTS transient failures, then an
    answer or a refusal (never reached when the failures use every attempt)."""
    transient = st.lists(st.sampled_from(TRANSIENT), max_size=MAX_ATTEMPTS)
    last = st.sampled_from(["ok", *refusals_of(kind)])
    return st.builds(lambda head, end: (head + [end])[:MAX_ATTEMPTS], transient, last)


def scripted(kind: str, scripts: dict[str, list[str]]) -> VendorServer:
    """The server of ``kind``, each prompt's requests answered as its script says."""

    class Scripted(server_class(kind)):  # type: ignore[misc, valid-type]
        served: list[tuple[str, str]] = []

        def next_failure(self, prompt: str, model: str) -> str | None:
            with self.lock:
                behaviour = scripts[prompt].pop(0)
                self.served.append((prompt, behaviour))
            return None if behaviour == "ok" else behaviour

    return Scripted()


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_behaviours_count_and_meter_every_call_once(kind: str, data: Any) -> None:
    scripts = data.draw(st.lists(row_script(kind), min_size=1, max_size=5), label="scripts")
    rows = [
        {"id": f"row-{i}", "prompt": f"What is {i} + {i * 11}?", "answer": str(i * 12)}
        for i in range(len(scripts))
    ]
    plan = {row["prompt"]: list(script) for row, script in zip(rows, scripts, strict=True)}
    retried: list[int] = []
    with scripted(kind, {p: list(s) for p, s in plan.items()}) as server:
        config = ModelEvalConfig(
            inference_kind=kind,
            model_name="model-1",
            client_params={"base_url": server.base_url, "api_key_env": None, "price": PRICE},
            max_attempts=MAX_ATTEMPTS,
            backoff_s=0,
            batch_size=3,
        )
        client = build_client(config, sleep=lambda s: None, on_retry=lambda *a: retried.append(1))
        artifacts = evaluate_model(config, client=client, rows=rows)

    report: RetryReport = artifacts.summary.retry_report
    answered = [r for r in artifacts.records if r["predictions"] != [None]]
    # Every row is answered, refused or failed: exactly one of them.
    assert len(answered) + report.total_refused + report.total_failures == len(rows)
    for row, record in zip(rows, artifacts.records, strict=True):
        script = plan[row["prompt"]]
        # Each request was made as scripted, and none after a refusal or an answer.
        assert [b for p, b in server.served if p == row["prompt"]] == script
        if script[-1] == "ok":
            assert record["predictions"] == [f"<answer>{row['answer']}</answer>"]
            assert record["correct"] and "refused" not in record and "errors" not in record
        elif script[-1] in REFUSALS:
            assert record["predictions"] == [None] and not record["correct"]
            assert set(record["refused"]) == {0} and "errors" not in record
        else:
            assert len(script) == MAX_ATTEMPTS and "refused" not in record
            assert set(record["errors"]) == {0}
            (failure,) = [f for f in report.failures if f.row_id == row["id"]]
            assert failure.attempts == MAX_ATTEMPTS
    # Every answered or refused request is metered once, with its prompt's tokens; failed tries
    # are not, and were retried.
    ends = [(p, b) for p, b in server.served if b == "ok" or b in REFUSALS]
    calls = client.usage.calls()
    assert len(calls) == len(ends)
    assert len(retried) == len(server.served) - len(rows)
    tokens_in = sum(count_tokens(p) for p, _ in ends)
    tokens_out = sum(
        1 if b == "ok" else 0 if b == "blocked" else count_tokens(REFUSAL_TEXT) for _, b in ends
    )
    metrics = artifacts.summary.metrics
    if ends:
        assert metrics["tokens_in"] == tokens_in and metrics["tokens_out"] == tokens_out
        assert metrics["cost_usd"] == pytest.approx((tokens_in + 2 * tokens_out) / 1e6)
    else:
        assert not {"tokens_in", "tokens_out", "cost_usd", "latency_p50_s"} & set(metrics)


def test_refusals_are_in_the_summary_and_predictions(tmp_path: Path) -> None:
    rows = [
        {"id": f"row-{i}", "prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(3)
    ]
    with OpenAIServer(["content_filter", "500", "500", "500"]) as server:
        artifacts = evaluate_model(
            ModelEvalConfig(
                output_dir=str(tmp_path),
                inference_kind="openai_compatible",
                model_name="model-1",
                client_params={"base_url": server.base_url, "api_key_env": None},
                backoff_s=0,
                batch_size=1,  # in order: row 0 is filtered, row 1 fails, row 2 is answered
            ),
            rows=rows,
        )
    saved = json.loads((tmp_path / "summary.json").read_text())["retry_report"]
    assert (saved["total_refused"], saved["refused_rows"], saved["failed_rows"]) == (1, [0], [1])
    assert saved["refusals"][0]["reason"].endswith("finish_reason content_filter")
    predictions = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert predictions[0]["refused"] == {"0": saved["refusals"][0]["reason"]}
    assert "refused" not in predictions[1] and "refused" not in predictions[2]
    markdown = (tmp_path / "summary.md").read_text()
    assert "**1 sample refused**" in markdown and "| 0 | row-0 | 0 |" in markdown
    assert artifacts.summary.metrics["exact_match"] == pytest.approx(1 / 3)
    # The refused request and the answered one were metered, "What is i + 1?" 5 words each;
    # the failed tries were not.
    assert artifacts.summary.metrics["tokens_in"] == 2 * 5


def test_a_judge_that_refuses_scores_zero_and_says_why() -> None:
    with SERVERS["claude"](["refusal"], policy=rubric_judge) as server:
        params = {"model": "judge-1", "base_url": server.base_url, "api_key_env": None}
        judge = {"kind": "claude", "params": {**params, "price": PRICE}}
        verifier = VERIFIERS.build(
            "llm_judge", {"judge": judge, "rubric": "contains: <answer>5</answer>"}
        )
        refused = verifier.verify(prompt="What is 2 + 3?", completion="<answer>5</answer>")
        judged = verifier.verify(prompt="What is 2 + 3?", completion="<answer>5</answer>")
    assert (refused.reward, judged.reward) == (0.0, 1.0)
    assert "the judge refused" in refused.info["verdict_error"]
    assert "stop_reason refusal" in refused.info["verdict_error"]
    assert len(server.requests) == 2 and len(verifier.calls()) == 2  # metered, not retried


def test_evsys_eval_model_shows_the_refusals(workdir: Path) -> None:
    with OpenAIServer(["refusal"]) as server:
        done = run_evsys(
            "eval", "model",
            "--dataset", str(REPO / "data" / "arithmetic" / "test.jsonl"),
            "--output-dir", "out",
            "--inference-kind", "openai_compatible",
            "--model-name", "model-1",
            "--base-url", server.base_url,
            "--batch-size", "1",
            "--limit", "3",
            cwd=workdir,
            module=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "## Refusals" in done.stdout and "refusal: I'm sorry" in done.stdout
    assert "Every call succeeded" in done.stdout  # a refusal is no failed call
    summary = json.loads((workdir / "out" / "summary.json").read_text())
    assert summary["retry_report"]["total_refused"] == 1 and len(server.requests) == 3
    assert summary["metrics"]["exact_match"] == pytest.approx(2 / 3)


def test_an_eval_the_model_refused_whole_is_scored_not_failed(workdir: Path) -> None:
    with OpenAIServer(["refusal"] * 2) as server:
        done = run_evsys(
            "eval", "model",
            "--dataset", str(REPO / "data" / "arithmetic" / "test.jsonl"),
            "--output-dir", "out",
            "--inference-kind", "openai_compatible",
            "--model-name", "model-1",
            "--base-url", server.base_url,
            "--limit", "2",
            cwd=workdir,
            module=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "**2 samples refused**" in done.stdout and "every one of" not in done.stderr
    assert "| exact_match | 0 |" in done.stdout


def test_a_refusal_breaks_a_streak_of_failed_calls() -> None:
    rows = [{"id": f"r{i}", "prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(4)]
    # In order: row 0 fails (3 tries), row 1 is refused, row 2 fails, row 3 is answered.
    with OpenAIServer(["500"] * 3 + ["refusal"] + ["500"] * 3) as server:
        artifacts = evaluate_model(
            ModelEvalConfig(
                inference_kind="openai_compatible",
                model_name="model-1",
                client_params={"base_url": server.base_url, "api_key_env": None},
                backoff_s=0,
                batch_size=1,
                give_up_after=2,  # two failed calls in a row would stop the eval
            ),
            rows=rows,
        )
    report = artifacts.summary.retry_report
    assert (report.failed_rows, report.refused_rows) == ([0, 2], [1])
    assert artifacts.records[3]["predictions"] == ["<answer>4</answer>"]
