"""``openai``: OpenAI's chat completions through the official ``openai`` SDK.

For OpenAI itself (``n`` samples in one request); other OpenAI-compatible servers are served by
``openai_compatible``, which needs no SDK.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from evsys.clients.base import (
    Completion,
    Failure,
    HostedClient,
    HostedConfig,
    MalformedResponse,
    call_sdk,
)
from evsys.clients.content import Message, openai_messages
from evsys.clients.refusals import openai_choice
from evsys.registry import register_inference


@register_inference("openai")
class OpenAIClient(HostedClient):
    """OpenAI chat completions (``pip install 'evsys[openai]'``)."""

    vendor, sdk_module, extra = "openai", "openai", "openai"
    max_samples_per_call = 8

    class Config(HostedConfig):
        base_url: str | None = Field(
            None,
            description="API root, up to /v1. None: $OPENAI_BASE_URL, else https://api.openai.com/v1.",
        )
        api_key_env: str | None = Field(
            "OPENAI_API_KEY",
            description="NAME of the environment variable holding the API key (never the key "
            "itself). None: no real key (a local server that checks none).",
        )

    def _connect(self, sdk: Any, api_key: str) -> Any:
        return sdk.OpenAI(
            api_key=api_key, base_url=self.cfg.base_url, timeout=self.cfg.timeout_s, max_retries=0
        )

    def _request(self, messages: list[Message], max_tokens: int, stop: list[str]) -> dict[str, Any]:
        return {
            **self.cfg.request_params,
            "model": self.cfg.model,
            "messages": openai_messages(messages),
            "max_completion_tokens": max_tokens,
            **({"stop": stop} if stop else {}),
        }

    def _call(self, client: Any, request: dict[str, Any], n: int) -> Completion:
        response = call_sdk(
            client.chat.completions.create, {**request, **({"n": n} if n > 1 else {})}
        )
        try:
            texts, refused = [], {}
            for i, choice in enumerate(response.choices):
                message = choice.message
                text, why = openai_choice(
                    choice.finish_reason,
                    message.content,
                    getattr(message, "refusal", None),
                    getattr(message, "tool_calls", None),
                )
                texts.append(text)
                if why is not None:
                    refused[i] = why
            usage = response.usage
            return Completion(
                texts, int(usage.prompt_tokens), int(usage.completion_tokens), refused
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise MalformedResponse(f"not a chat-completions response ({exc})") from None

    def _failure_of(self, exc: Exception) -> Failure | None:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return Failure(exc.status_code, exc.response.headers, exc.message)
        if isinstance(exc, openai.APIConnectionError):  # refused, reset, timed out
            return Failure(None, {}, f"{type(exc).__name__}: {exc}", transient=True)
        if isinstance(exc, openai.APIResponseValidationError | ValueError):  # not JSON
            return Failure(None, {}, f"malformed response: {exc}", malformed=True)
        return None
