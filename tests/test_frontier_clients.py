"""The hosted clients ``openai``, ``claude`` and ``gemini``: each vendor's real SDK against a local
server that speaks its wire protocol (tests/vendor_servers.py), with answers the server computes.

Per vendor: the request in the vendor's shape (system prompt, stop strings, max tokens,
temperature, images), n samples, the key from the named variable and never shown, rate limits
(429 + Retry-After), server errors and overload (500, 529), dropped connections and malformed
bodies retried by call_with_retry alone (the SDK's retries are off), client errors not retried,
the concurrency cap, and usage (tokens, latency, cost) in evaluate_model's summary.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from vendor_servers import SERVERS, VendorServer

from evsys.clients.content import anthropic_request, gemini_request, openai_messages
from evsys.clients.usage import lookup_price, quantile
from evsys.errors import ConfigError, DataError, MissingDependencyError
from evsys.harness import ModelEvalConfig, RetriesExhausted, evaluate_model
from evsys.registry import INFERENCE_CLIENTS

VENDORS = sorted(SERVERS)
PRICE = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0}
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n-a-tiny-image").decode()
ARITHMETIC = REPO / "data" / "arithmetic" / "test.jsonl"


def client(kind: str, server: VendorServer, sleeps: list[float] | None = None, **params: Any):
    settings = {
        "model": "model-1",
        "base_url": server.base_url,
        "api_key_env": None,
        "backoff_s": 0.5,
        "price": PRICE,
        **params,
    }
    hooks = {"sleep": sleeps.append} if sleeps is not None else {"sleep": lambda s: None}
    return INFERENCE_CLIENTS.build(kind, settings, **hooks)


def cost(tokens_in: int, tokens_out: int) -> float:
    return (
        tokens_in * PRICE["input_usd_per_mtok"] + tokens_out * PRICE["output_usd_per_mtok"]
    ) / 1e6


# -- content blocks, converted without a server ------------------------------------------------


def test_harbor_content_blocks_take_each_vendors_shape() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://x.test/cat.png", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/gif", "data": PIXEL},
                },
            ],
        },
    ]
    openai = openai_messages(messages)[1]["content"]
    assert openai[1] == {
        "type": "image_url",
        "image_url": {"url": "https://x.test/cat.png", "detail": "low"},
    }
    assert openai[3]["image_url"]["url"] == f"data:image/gif;base64,{PIXEL}"

    system, turns = anthropic_request(messages)
    assert system == "Be brief." and [t["role"] for t in turns] == ["user"]
    blocks = turns[0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "url", "url": "https://x.test/cat.png"},
    }
    assert blocks[2]["source"] == {"type": "base64", "media_type": "image/png", "data": PIXEL}

    system, contents = gemini_request(messages)
    parts = contents[0]["parts"]
    assert system == "Be brief." and contents[0]["role"] == "user"
    assert parts[1] == {
        "file_data": {"file_uri": "https://x.test/cat.png", "mime_type": "image/png"}
    }
    assert parts[3] == {"inline_data": {"mime_type": "image/gif", "data": base64.b64decode(PIXEL)}}

    audio = [{"role": "user", "content": [{"type": "input_audio", "data": "…"}]}]
    for convert in (openai_messages, anthropic_request, gemini_request):
        with pytest.raises(DataError, match="cannot send a content block of type 'input_audio'"):
            convert(audio)
    with pytest.raises(DataError, match="a system turn takes text only"):
        anthropic_request([{"role": "system", "content": [blocks[1]]}])


def test_prices_come_from_the_table_or_the_config() -> None:
    assert lookup_price("claude", "claude-sonnet-4-5-20250929").output_usd_per_mtok == 15.0
    assert lookup_price("openai", "gpt-4o-mini-2024-07-18").input_usd_per_mtok == 0.15
    assert lookup_price("openai", "gpt-4o-2024-08-06").input_usd_per_mtok == 2.5  # not -mini
    assert lookup_price("gemini", "models/gemini-2.5-flash").output_usd_per_mtok == 2.5
    assert lookup_price("openai", "my-finetune") is None
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5 and quantile([5.0], 0.95) == 5.0


# -- each vendor's SDK against its test server --------------------------------------------------


def request_fields(kind: str, request: dict[str, Any]) -> dict[str, Any]:
    """System prompt, stop strings, token budget and temperature where each API takes them."""
    if kind == "openai":
        system = (
            request["messages"][0]["content"]
            if request["messages"][0]["role"] == "system"
            else None
        )
        return {
            "system": system,
            "stop": request.get("stop"),
            "max_tokens": request.get("max_completion_tokens"),
            "temperature": request.get("temperature"),
        }
    if kind == "claude":
        return {
            "system": request.get("system"),
            "stop": request.get("stop_sequences"),
            "max_tokens": request.get("max_tokens"),
            "temperature": request.get("temperature", 0.0),  # sent only where the SDK takes it
        }
    config = request["generationConfig"]
    return {
        "system": request["systemInstruction"]["parts"][0]["text"],
        "stop": config.get("stopSequences"),
        "max_tokens": config.get("maxOutputTokens"),
        "temperature": config.get("temperature"),
    }


@pytest.mark.parametrize("kind", VENDORS)
def test_the_sdk_sends_the_vendors_request_and_reads_a_computed_answer(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VENDOR_TEST_KEY", "sk-vendor-secret")
    with SERVERS[kind](api_key="sk-vendor-secret") as server:
        model = client(kind, server, api_key_env="VENDOR_TEST_KEY", system_prompt="Be brief.")
        text = model.generate(prompt="What is 19 + 23?", max_tokens=16, temperature=0.0)
        assert text == "<answer>42</answer>"
        # A stop string is honoured (the server cuts its answer there).
        cut = model.generate(prompt="What is 19 + 23?", max_tokens=16, stop=["2"])
        assert cut == "<answer>4"
    first = server.requests[0]
    assert first["model"] == "model-1"
    assert request_fields(kind, first) == {
        "system": "Be brief.",
        "stop": None,
        "max_tokens": 16,
        "temperature": 0.0,
    }
    assert request_fields(kind, server.requests[1])["stop"] == ["2"]
    # The key went in the vendor's auth header, and nowhere in the client's settings.
    assert "sk-vendor-secret" in json.dumps(first["headers"])
    assert "sk-vendor-secret" not in repr(model.cfg.model_dump())
    calls = model.usage.calls()
    # "Be brief." + "What is 19 + 23?" are 7 words; the answer is one.
    assert [(c.tokens_in, c.tokens_out) for c in calls] == [(7, 1), (7, 1)]
    assert calls[0].cost_usd == pytest.approx(cost(7, 1))


@pytest.mark.parametrize("kind", VENDORS)
def test_n_samples_per_prompt(kind: str) -> None:
    with SERVERS[kind]() as server:
        texts = client(kind, server).sample(prompt="What is 2 + 3?", n=6, temperature=1.0)
    assert len(texts) == 6 and set(texts) <= {"<answer>5</answer>", "<answer>6</answer>"}
    assert len(set(texts)) == 2  # sampled: some right, some off by one
    # OpenAI and Gemini sample n in one request; Anthropic's API takes one per request.
    assert len(server.requests) == (6 if kind == "claude" else 1)


@pytest.mark.parametrize("kind", VENDORS)
def test_images_reach_the_api_in_its_shape(kind: str) -> None:
    prompt = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is 1 + 1?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
                },
            ],
        }
    ]
    with SERVERS[kind]() as server:
        assert client(kind, server).generate(prompt=prompt) == "<answer>2</answer>"
    sent = server.requests[0]
    if kind == "openai":
        image = sent["messages"][0]["content"][1]
        assert image == {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{PIXEL}"},
        }
    elif kind == "claude":
        image = sent["messages"][0]["content"][1]
        assert image["source"] == {"type": "base64", "media_type": "image/png", "data": PIXEL}
    else:
        image = sent["contents"][0]["parts"][1]["inlineData"]  # the API reads either casing
        assert image["data"] == PIXEL
        assert image.get("mimeType", image.get("mime_type")) == "image/png"


@pytest.mark.parametrize("kind", VENDORS)
def test_a_rate_limit_waits_as_long_as_the_server_asks(kind: str) -> None:
    sleeps: list[float] = []
    with SERVERS[kind](["429"], retry_after="7") as server:
        assert (
            client(kind, server, sleeps).generate(prompt="What is 3 + 4?") == "<answer>7</answer>"
        )
    assert len(server.requests) == 2  # one retry: ours; the SDK's own are off
    assert sleeps[0] >= 7.0  # Retry-After (Gemini: its RetryInfo), over the 0.5 s backoff


@pytest.mark.parametrize("kind", VENDORS)
@pytest.mark.parametrize(
    "failures", [["500", "529"], ["reset", "503"], ["malformed", "wrong_shape"]]
)
def test_transient_failures_are_retried_with_backoff(kind: str, failures: list[str]) -> None:
    sleeps: list[float] = []
    with SERVERS[kind](failures) as server:
        answer = client(kind, server, sleeps).generate(prompt="What is 3 + 4?")
    assert answer == "<answer>7</answer>"
    assert len(server.requests) == 3 and len(sleeps) == 2
    assert sleeps[1] > sleeps[0]  # backing off


@pytest.mark.parametrize("kind", VENDORS)
def test_failures_that_outlast_the_attempts_are_reported(kind: str) -> None:
    doomed = pytest.raises(RetriesExhausted, match="after 2 attempts")
    with SERVERS[kind](["malformed", "malformed"]) as server, doomed as info:
        client(kind, server, max_attempts=2).generate(prompt="What is 3 + 4?")
    assert info.value.attempts == 2 and "malformed response" in info.value.error
    assert len(server.requests) == 2

    unreadable = pytest.raises(RetriesExhausted, match="not a .* response")
    with SERVERS[kind](["wrong_shape"]) as server, unreadable:
        client(kind, server, max_attempts=1).generate(prompt="What is 3 + 4?")


@pytest.mark.parametrize("kind", VENDORS)
def test_a_rejected_key_is_not_retried_and_never_shown(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VENDOR_TEST_KEY", "sk-wrong-secret")
    with SERVERS[kind](api_key="sk-right-secret") as server:
        model = client(kind, server, api_key_env="VENDOR_TEST_KEY")
        with pytest.raises(RetriesExhausted, match="not retryable") as info:
            model.generate(prompt="What is 1 + 1?")
    message = str(info.value)
    assert "HTTP 401" in message and "VENDOR_TEST_KEY is set" in message
    assert "sk-wrong-secret" not in message and "sk-right-secret" not in message
    assert len(server.requests) == 1

    monkeypatch.delenv("VENDOR_TEST_KEY")
    with pytest.raises(ConfigError, match="variable VENDOR_TEST_KEY, which is not set"):
        client(kind, server, api_key_env="VENDOR_TEST_KEY")


@pytest.mark.parametrize("kind", VENDORS)
def test_concurrent_requests_stay_under_the_cap(kind: str) -> None:
    prompts = [f"What is {i} + 1?" for i in range(8)]
    with SERVERS[kind](delay_s=0.05) as server:
        answers = client(kind, server, concurrency=2).generate_concurrently(prompts)
    assert answers == [f"<answer>{i + 1}</answer>" for i in range(8)]  # in order
    assert server.max_in_flight == 2


@pytest.mark.parametrize(
    ("kind", "extra"), [("openai", "openai"), ("claude", "claude"), ("gemini", "gemini")]
)
def test_a_missing_sdk_says_which_extra_installs_it(
    kind: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = INFERENCE_CLIENTS.get(kind).sdk_module
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` now fails
    with pytest.raises(MissingDependencyError, match=rf"pip install 'evsys\[{extra}\]'"):
        INFERENCE_CLIENTS.build(kind, {"model": "m", "api_key_env": None})


def test_a_model_is_required() -> None:
    with pytest.raises(ConfigError, match="the claude inference client needs `model`"):
        INFERENCE_CLIENTS.build("claude", {"api_key_env": None})


# -- evaluate_model: pass@k and usage in the summary ----------------------------------------------


@pytest.mark.parametrize("kind", VENDORS)
def test_evaluate_model_scores_pass_at_k_and_reports_usage(kind: str, tmp_path: Path) -> None:
    with SERVERS[kind]() as server:
        artifacts = evaluate_model(
            ModelEvalConfig(
                dataset=str(ARITHMETIC),
                output_dir=str(tmp_path / "out"),
                inference_kind=kind,
                model_name="model-1",
                client_params={"base_url": server.base_url, "api_key_env": None, "price": PRICE},
                limit=5,
                num_samples=4,
                pass_at=[1, 4],
                temperature=1.0,
                backoff_s=0.001,
            )
        )
    metrics = artifacts.summary.metrics
    assert metrics["pass@4"] >= metrics["pass@1"] and 0 < metrics["pass@1"] < 1
    # The server counts words: a completion is one, a prompt as many as it has; Anthropic's API
    # is asked once per sample, the others once per row.
    prompts = [json.loads(line)["prompt"] for line in ARITHMETIC.read_text().splitlines()[:5]]
    tokens_in = sum(len(p.split()) for p in prompts) * (4 if kind == "claude" else 1)
    assert metrics["tokens_out"] == 20.0 and metrics["tokens_in"] == tokens_in
    assert metrics["cost_usd"] == pytest.approx(cost(tokens_in, 20))
    assert 0 < metrics["latency_p50_s"] <= metrics["latency_p95_s"]
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "| cost_usd |" in markdown and "| latency_p95_s |" in markdown
