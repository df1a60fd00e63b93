"""The eval harness: retries against a flaky OpenAI-compatible server, alias matching, scoring,
predictions and summary files, prompt helpers, and a trained mock checkpoint through evaluate_model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO
from openai_server import FakeChatServer

from evsys.errors import ConfigError, DataError
from evsys.harness import (
    AliasMatcher,
    ModelEvalConfig,
    RetriesExhausted,
    call_with_retry,
    evaluate_model,
    extract_predicted_slug,
    load_eval_dataset,
    qwen3_chat_template_prompt,
    qwen_chat_prompt,
    score_rows,
)
from evsys.harness.openai_compatible import OpenAICompatibleClient

ARITHMETIC = REPO / "data" / "arithmetic" / "test.jsonl"
BENCHMARK = REPO / "data" / "tool_selection" / "benchmark"


def api_config(server: FakeChatServer, tmp_path: Path, **fields) -> ModelEvalConfig:
    return ModelEvalConfig(
        dataset=str(ARITHMETIC),
        output_dir=str(tmp_path / "out"),
        inference_kind="openai_compatible",
        model_name="fake-model",
        client_params={"base_url": server.base_url},
        limit=6,
        backoff_s=0.001,
        **fields,
    )


# -- call_with_retry --------------------------------------------------------------------------


class Flaky:
    """Fails its first ``k`` calls with ``error``, then returns ``"ok"``."""

    def __init__(self, k: int, error: Exception | None = None):
        self.k, self.calls, self.error = k, 0, error or ConnectionError("boom")

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.k:
            raise self.error
        return "ok"


def test_retries_back_off_exponentially_until_the_call_succeeds() -> None:
    sleeps: list[float] = []
    fn = Flaky(3)
    value = call_with_retry(fn, max_attempts=4, backoff_s=1.0, sleep=sleeps.append, rng=lambda: 0)
    assert value == "ok" and fn.calls == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_backoff_is_capped_and_jittered_and_honours_retry_after() -> None:
    sleeps: list[float] = []
    call_with_retry(
        Flaky(3), max_attempts=4, backoff_s=1, max_backoff_s=2.5, sleep=sleeps.append, rng=lambda: 1
    )
    assert sleeps == pytest.approx([1.1, 2.2, 2.75])  # +10% jitter at most, cap before jitter

    error = ConnectionError("slow down")
    error.retry_after = 7.0  # type: ignore[attr-defined]
    sleeps.clear()
    call_with_retry(Flaky(1, error), backoff_s=0.5, sleep=sleeps.append, rng=lambda: 0)
    assert sleeps == [7.0]


def test_exhausted_and_unretryable_calls_raise_with_their_attempt_count() -> None:
    with pytest.raises(RetriesExhausted, match=r"boom \(after 3 attempts\)") as info:
        call_with_retry(Flaky(10), max_attempts=3, backoff_s=0, sleep=lambda s: None)
    assert info.value.attempts == 3

    fn = Flaky(10, ValueError("bad request"))
    with pytest.raises(RetriesExhausted, match="not retryable") as info:
        call_with_retry(fn, retry_if=lambda e: not isinstance(e, ValueError), sleep=lambda s: None)
    assert info.value.attempts == 1 and fn.calls == 1


# -- the OpenAI-compatible client against a local server ---------------------------------------


@pytest.mark.parametrize("failures", [["500"], ["429", "503"], ["reset", "500", "reset"]])
def test_client_retries_transient_failures_and_then_answers(failures: list[str]) -> None:
    sleeps: list[float] = []
    with FakeChatServer(failures) as server:
        client = OpenAICompatibleClient(
            model="fake-model", base_url=server.base_url, backoff_s=0.5, sleep=sleeps.append
        )
        client.cfg = client.cfg.model_copy(update={"max_attempts": 4})
        assert client.generate(prompt="What is 19 + 23?", max_tokens=16) == "<answer>42</answer>"
    assert len(server.requests) == len(failures) + 1
    assert len(sleeps) == len(failures)
    assert all(b >= a for a, b in zip(sleeps, sleeps[1:], strict=False))  # backing off
    request = server.requests[-1]
    assert request["model"] == "fake-model" and request["max_tokens"] == 16
    assert request["messages"] == [{"role": "user", "content": "What is 19 + 23?"}]


def test_client_sends_the_key_from_the_named_variable_and_never_shows_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "sk-test-very-secret"
    with FakeChatServer(api_key=secret) as server:
        monkeypatch.setenv("FAKE_API_KEY", secret)
        client = OpenAICompatibleClient(
            model="m", base_url=server.base_url, api_key_env="FAKE_API_KEY"
        )
        assert client.generate(prompt="What is 1 + 1?") == "<answer>2</answer>"
        assert server.requests[-1]["headers"]["Authorization"] == f"Bearer {secret}"
        assert secret not in repr(client.cfg.model_dump())

        monkeypatch.setenv("FAKE_API_KEY", "sk-wrong")
        with pytest.raises(RetriesExhausted) as info:  # 401: not retried
            client.generate(prompt="What is 1 + 1?")
    message = str(info.value)
    assert "HTTP 401" in message and "FAKE_API_KEY is set" in message and "not retryable" in message
    assert "sk-wrong" not in message and secret not in message
    assert len(server.requests) == 2


def test_client_needs_a_model() -> None:
    with pytest.raises(ConfigError, match="needs `model`"):
        OpenAICompatibleClient(base_url="http://127.0.0.1:1/v1")


# -- evaluate_model ----------------------------------------------------------------------------


def test_evaluate_model_retries_through_failures_and_scores_every_row(tmp_path: Path) -> None:
    with FakeChatServer(["500", "reset", "429"]) as server:
        artifacts = evaluate_model(api_config(server, tmp_path, batch_size=1, max_attempts=4))
    summary = artifacts.summary
    assert summary.metrics["exact_match"] == 1.0 and summary.metrics["pass@1"] == 1.0
    assert summary.retry_report.total_failures == 0 and summary.retry_report.retries == 3
    assert len(server.requests) == 6 + 3

    lines = [
        json.loads(line) for line in (tmp_path / "out/predictions.jsonl").read_text().splitlines()
    ]
    source = [json.loads(line) for line in ARITHMETIC.read_text().splitlines()][:6]
    assert [r["id"] for r in lines] == [row["id"] for row in source]
    assert [r["target"] for r in lines] == [row["answer"] for row in source]
    assert all(r["correct"] and r["extracted"] == [r["target"]] for r in lines)
    assert lines[0]["prompt"] == [{"role": "user", "content": source[0]["prompt"]}]
    saved = json.loads((tmp_path / "out/summary.json").read_text())
    assert saved["metrics"] == summary.metrics and saved["retry_report"]["retries"] == 3
    assert "Every call succeeded (3 retried attempts)" in (tmp_path / "out/summary.md").read_text()


def test_exhausted_retries_are_reported_per_row_not_raised(tmp_path: Path) -> None:
    source = [json.loads(line) for line in ARITHMETIC.read_text().splitlines()][:6]
    doomed = source[2]["prompt"]
    with FakeChatServer(always_fail=doomed) as server:
        artifacts = evaluate_model(api_config(server, tmp_path, max_attempts=3, batch_size=4))
    report = artifacts.summary.retry_report
    assert report.total_failures == 1 and report.failed_rows == [2]
    (failure,) = report.failures
    assert failure.row_id == source[2]["id"] and failure.attempts == 3
    assert "HTTP 500" in failure.error
    assert artifacts.summary.metrics["exact_match"] == pytest.approx(5 / 6)  # failed = wrong

    records = [
        json.loads(line) for line in (tmp_path / "out/predictions.jsonl").read_text().splitlines()
    ]
    assert len(records) == 6  # the failed row is kept, with its error
    assert records[2]["predictions"] == [None] and "HTTP 500" in records[2]["errors"]["0"]
    assert "errors" not in records[0]
    markdown = (tmp_path / "out/summary.md").read_text()
    assert "1 calls failed after all attempts" in markdown and source[2]["id"] in markdown
    saved = json.loads((tmp_path / "out/summary.json").read_text())
    assert saved["retry_report"]["failures"][0]["index"] == 2


def test_a_trained_mock_checkpoint_scores_better_than_the_base_model(tmp_path: Path) -> None:
    from evsys.compose.compose import compose_and_validate
    from evsys.registry import INFERENCE_CLIENTS, METRICS
    from evsys.run.evaluation import generate_all
    from evsys.run.runner import run_arm

    overrides = ["data=arithmetic", "algorithm.params.max_steps=200", "eval=none"]
    _, config = compose_and_validate(overrides)
    record = run_arm(config, tmp_path / "run").record
    assert record["status"] == "completed", record["error"]
    checkpoint = record["artifacts"]["final_checkpoint"]

    train = REPO / "data" / "arithmetic" / "train.jsonl"
    base = evaluate_model(ModelEvalConfig(dataset=str(train), limit=40))
    trained = evaluate_model(
        ModelEvalConfig(
            dataset=str(train), limit=40, checkpoint_path=checkpoint, output_dir=str(tmp_path / "e")
        )
    )
    assert base.summary.metrics["exact_match"] == 0.0
    assert trained.summary.metrics["exact_match"] > 0.3
    # The same score the run's own eval gives this checkpoint on these rows.
    rows = load_eval_dataset(train)[0][:40]
    client = INFERENCE_CLIENTS.build("mock", {"checkpoint": checkpoint})
    predictions = generate_all(client, rows, max_tokens=256, temperature=0.0)
    expected = METRICS.build("exact_match").compute(predictions=predictions, targets=rows)
    assert trained.summary.metrics["exact_match"] == expected
    assert (tmp_path / "e/predictions.jsonl").read_text().count("\n") == 40


def test_bad_input_fails_before_any_call(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "What is 1 + 1?", "answer": "2"}\n\n{"prompt": oops}\n')
    with pytest.raises(DataError, match=r"broken.jsonl:3: invalid JSON"):
        evaluate_model(ModelEvalConfig(dataset=str(broken), output_dir=str(tmp_path / "o")))
    with pytest.raises(DataError, match="no such file"):
        evaluate_model(ModelEvalConfig(dataset=str(tmp_path / "missing.jsonl")))
    with pytest.raises(ConfigError, match="unknown inference_client 'gpt'"):
        evaluate_model(ModelEvalConfig(dataset=str(ARITHMETIC), inference_kind="gpt"))
    with pytest.raises(ConfigError, match="client_params.timeout_s"):
        evaluate_model(
            ModelEvalConfig(
                dataset=str(ARITHMETIC),
                inference_kind="openai_compatible",
                model_name="m",
                client_params={"timeout_s": -1},
            )
        )
    with pytest.raises(ValueError, match="pass@4 needs num_samples >= 4"):
        ModelEvalConfig(pass_at=[1, 4], num_samples=2)
    assert not (tmp_path / "o").exists()


# -- aliases and scoring -----------------------------------------------------------------------


def test_alias_matcher() -> None:
    matcher = AliasMatcher({"GMAIL_SEND_EMAIL": ["gmail.send_email", "Send Email"]})
    assert matcher.match("GMAIL_SEND_EMAIL", "gmail_send_email") == "exact"
    assert matcher.match(" send email. ", "GMAIL_SEND_EMAIL") == "alias"
    assert matcher.match("gmail.send_email", "send email") == "alias"  # a group is symmetric
    assert matcher.match("SLACK_SEND_MESSAGE", "GMAIL_SEND_EMAIL") is None
    assert matcher.match(None, "GMAIL_SEND_EMAIL") is None and matcher.match("", "x") is None
    # a row's own verified aliases, and the groups those aliases belong to
    assert matcher.matches("mail it", "EMAIL", extra=["mail it"])
    assert matcher.matches("gmail.send_email", "EMAIL", extra=["send email"])
    groups = AliasMatcher([["NYC", "New York City"], ["New York City", "Big Apple"]])
    assert groups.matches("big apple", "NYC")


def test_alias_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("NYC: [New York City]\n")
    assert AliasMatcher.from_file(tmp_path / "a.yaml").matches("new york city", "NYC")
    (tmp_path / "a.json").write_text('[["1", "one"]]')
    assert AliasMatcher.from_file(tmp_path / "a.json").matches("One", "1")
    (tmp_path / "bad.json").write_text('{"NYC": 3}')
    with pytest.raises(DataError, match="bad.json: an alias file maps"):
        AliasMatcher.from_file(tmp_path / "bad.json")
    with pytest.raises(DataError, match="no such alias file"):
        AliasMatcher.from_file(tmp_path / "none.json")


def test_score_rows_with_aliases_secondary_aliases_and_pass_at_k() -> None:
    rows = [
        {"id": "a", "prompt": "p", "answer": "GMAIL_SEND_EMAIL", "toolkit": "gmail"},
        {"id": "b", "prompt": "p", "answer": "SLACK_SEND_MESSAGE", "toolkit": "slack"},
    ]
    samples = [
        ["<answer>gmail.send_email</answer>", "<answer>GMAIL_SEND_EMAIL</answer>"],
        [None, "<answer>SLACK_POST</answer>"],
    ]
    scored = score_rows(
        rows,
        samples,
        matcher=AliasMatcher({"GMAIL_SEND_EMAIL": ["gmail.send_email"]}),
        secondary=AliasMatcher({"SLACK_SEND_MESSAGE": ["SLACK_POST"]}),
        pass_at=[1, 2],
        breakdown_keys=["toolkit"],
    )
    m = scored.metrics
    assert m["exact_match"] == 0.0  # the registered metric: first sample, no aliases
    assert m["pass@1"] == 0.5 and m["pass@2"] == 0.5  # row a: 2 of 2 right; row b: 0 of 2
    assert m["secondary_pass@1"] == 0.75 and m["secondary_pass@2"] == 1.0
    assert m["pass@1/toolkit=gmail"] == 1.0 and m["pass@1/toolkit=slack"] == 0.0
    assert scored.records[0]["match"] == ["alias", "exact"]
    assert scored.records[1]["secondary_correct"] == [False, True]


def test_a_row_without_an_expected_answer_is_named() -> None:
    with pytest.raises(DataError, match="row 1 .*'b'.* has no expected answer"):
        score_rows([{"prompt": "p", "answer": "x"}, {"id": "b", "prompt": "q"}], [["x"], ["y"]])


# -- prompt helpers and datasets ----------------------------------------------------------------


def test_qwen_prompts_and_slug_extraction() -> None:
    text = qwen_chat_prompt("Hi", system="Be brief.")
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert qwen3_chat_template_prompt("Hi", system=None).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert extract_predicted_slug("<think>maybe SLACK_POST</think> I'd use GMAIL_SEND_EMAIL") == (
        "GMAIL_SEND_EMAIL"
    )
    assert (
        extract_predicted_slug("x <answer> WEATHER_GET_CURRENT </answer>") == "WEATHER_GET_CURRENT"
    )
    assert extract_predicted_slug("no idea") == "no idea" and extract_predicted_slug(None) is None


def test_load_eval_dataset_reads_benchmark_directories_and_jsonl(tmp_path: Path) -> None:
    rows, metadata = load_eval_dataset(BENCHMARK)
    assert len(rows) == 40 and metadata["breakdown_keys"] == ["toolkit"]
    assert rows[0]["prompt"] and rows[0]["answer"] == "WEATHER_GET_CURRENT"
    rows, metadata = load_eval_dataset(ARITHMETIC)
    assert metadata == {} and rows[0]["id"] == "arithmetic-test-000"
    (tmp_path / "x.jsonl").write_text('{"prompt": "a", "answer": "b"}\n{"answer": "c"}\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: a row needs 'prompt'"):
        load_eval_dataset(tmp_path / "x.jsonl")


def test_a_benchmark_directory_is_broken_down_by_its_keys(tmp_path: Path) -> None:
    artifacts = evaluate_model(ModelEvalConfig(dataset=str(BENCHMARK), extract="slug"))
    assert {k for k in artifacts.summary.metrics if k.startswith("exact_match/")} == {
        f"exact_match/toolkit={t}" for t in ("calendar", "github", "gmail", "slack", "weather")
    }
