"""HTTP 409 Conflict is not transient: every inference client (each vendor's real SDK, and
``openai_compatible``) sends the request once and stops with one clear error. The openai and
anthropic SDKs would retry a 409 on their own; their retries are off and ours leave it alone."""

from __future__ import annotations

import pytest
from vendor_servers import SERVERS, OpenAIServer

from evsys.harness import RetriesExhausted
from evsys.registry import INFERENCE_CLIENTS

KINDS = [*sorted(SERVERS), "openai_compatible"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_conflict_is_sent_once_and_named(kind: str) -> None:
    server_class = OpenAIServer if kind == "openai_compatible" else SERVERS[kind]
    sleeps: list[float] = []
    with server_class(["409", "409", "409"]) as server:
        model = INFERENCE_CLIENTS.build(
            kind,
            {"model": "model-1", "base_url": server.base_url, "api_key_env": None},
            sleep=sleeps.append,
        )
        with pytest.raises(RetriesExhausted, match="not retryable") as info:
            model.generate(prompt="What is 3 + 4?")
        assert len(server.requests) == 1 and sleeps == []
        assert "409" in str(info.value) and info.value.attempts == 1
        # The conflict gone, the next call is answered: the client was not left broken.
        server.failures.clear()
        assert model.generate(prompt="What is 3 + 4?") == "<answer>7</answer>"
