"""``model.renderer_name`` (the reference's Tinker renderer hint) chooses how the tinker backend
renders training rows and eval prompts, under the real ``tinker`` SDK against the Tinker-protocol
test server: the tokens the server receives are the renderer's format, not the model's own chat
template."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require

require("tinker", "pip install 'evsys[tinker]'", declared_by="EVSYS_REQUIRE_TINKER")
require("transformers", "pip install 'evsys[local]'", declared_by="EVSYS_REQUIRE_TINKER")

from tinker_server import TINY, TinkerTestServer, serving_tiny  # noqa: E402

from evsys.backends.tinker.rendering import chat_tokens, load_tokenizer, prompt_tokens  # noqa: E402
from evsys.compose.compose import compose_and_validate  # noqa: E402
from evsys.errors import BackendError  # noqa: E402
from evsys.renderers import TEMPLATES  # noqa: E402
from evsys.run.runner import run_arm  # noqa: E402

pytestmark = pytest.mark.tinker
CHAT = [
    {"role": "system", "content": "Pick a tool."},
    {"role": "user", "content": "Email Fatima"},
    {"role": "assistant", "content": "<answer>GMAIL_SEND_EMAIL</answer>"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinkerTestServer]:
    with serving_tiny(tmp_path_factory.mktemp("tinker-server")) as running:
        yield running


# How each renderer's prompt ends: the assistant's header, where the model writes its answer.
PROMPT_ENDS = {
    "qwen3": "<|im_start|>assistant\n",
    "qwen3_disable_thinking": "<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "role_colon": "\n\nAssistant:",
}


def test_every_renderer_is_tested() -> None:
    assert set(PROMPT_ENDS) == set(TEMPLATES)


@pytest.mark.parametrize("renderer", sorted(PROMPT_ENDS))
def test_each_renderer_weights_only_the_assistants_tokens(renderer: str) -> None:
    tokenizer = load_tokenizer(TINY, renderer=renderer)
    tokens, mask = chat_tokens(tokenizer, CHAT)
    trained = tokenizer.decode([t for t, m in zip(tokens, mask, strict=True) if m])
    assert "GMAIL_SEND_EMAIL" in trained and "Email Fatima" not in trained
    assert "Email Fatima" in tokenizer.decode(tokens)
    prompt = tokenizer.decode(prompt_tokens(tokenizer, CHAT[:2]))
    assert prompt.endswith(PROMPT_ENDS[renderer]), prompt


def test_an_unknown_renderer_is_one_clear_error() -> None:
    with pytest.raises(BackendError, match="unknown renderer 'qwen9'; known renderers: llama3"):
        load_tokenizer(TINY, renderer="qwen9")


def test_renderer_name_renders_training_rows_and_eval_prompts(
    server: TinkerTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = server.engine
    trained: list[list[int]] = []
    prompts: list[list[int]] = []
    forward_backward, sample = engine.forward_backward, engine.sample

    def spy_forward_backward(model_id: str, data: list[dict[str, Any]], *args: Any) -> Any:
        trained.extend(list(datum["tokens"]) for datum in data)
        return forward_backward(model_id, data, *args)

    def spy_sample(sampler_id: str, prompt: list[int], *args: Any) -> Any:
        prompts.append(list(prompt))
        return sample(sampler_id, prompt, *args)

    monkeypatch.setattr(engine, "forward_backward", spy_forward_backward)
    monkeypatch.setattr(engine, "sample", spy_sample)
    overrides = [
        "backend=tinker",
        f"backend.params.base_url={server.url}",
        "model=tiny",
        "++model.renderer_name=role_colon",
        "algorithm.params.max_steps=1",
        "eval.n_samples=2",
        "eval.max_tokens=4",
    ]
    _, config = compose_and_validate(overrides)
    outcome = run_arm(config, tmp_path / "run", overrides=overrides)
    assert outcome.record["status"] == "completed", outcome.record["error"]

    plain = load_tokenizer(TINY)  # decodes any tokens; renders with the model's own template
    rendered = plain.decode(trained[0])
    assert rendered.startswith("System: ") and "\n\nUser: " in rendered
    assert "\n\nAssistant: <answer>" in rendered
    assert prompts and all(plain.decode(p).endswith("\n\nAssistant:") for p in prompts)
    # The model's own template renders the same row otherwise.
    assert not plain.decode(chat_tokens(plain, CHAT)[0]).startswith("System: ")
