"""``claude``: Anthropic's Messages API through the official ``anthropic`` SDK."""

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
from evsys.clients.content import Message, anthropic_request
from evsys.clients.refusals import anthropic_refusal
from evsys.registry import register_inference


@register_inference("claude")
class ClaudeClient(HostedClient):
    """Anthropic messages (``pip install 'evsys[claude]'``). The API samples one completion per
    request: ``n`` samples are ``n`` requests."""

    vendor, sdk_module, extra = "claude", "anthropic", "claude"

    class Config(HostedConfig):
        base_url: str | None = Field(
            None,
            description="API root, without /v1. None: $ANTHROPIC_BASE_URL, else "
            "https://api.anthropic.com.",
        )
        api_key_env: str | None = Field(
            "ANTHROPIC_API_KEY",
            description="NAME of the environment variable holding the API key (never the key "
            "itself). None: no real key (a local server that checks none).",
        )

    def _connect(self, sdk: Any, api_key: str) -> Any:
        return sdk.Anthropic(
            api_key=api_key, base_url=self.cfg.base_url, timeout=self.cfg.timeout_s, max_retries=0
        )

    def _request(self, messages: list[Message], max_tokens: int, stop: list[str]) -> dict[str, Any]:
        system, turns = anthropic_request(messages)
        return {
            **self.cfg.request_params,
            "model": self.cfg.model,
            "messages": turns,
            "max_tokens": max_tokens,
            **({"system": system} if system else {}),
            **({"stop_sequences": stop} if stop else {}),
        }

    def _call(self, client: Any, request: dict[str, Any], n: int) -> Completion:
        # A field the installed SDK does not name (recent ones leave out `temperature`) is
        # sent in extra_body: the Messages API still takes it.
        response = call_sdk(client.messages.create, request)
        try:
            why = anthropic_refusal(response.stop_reason)
            # The text before a refusal is not the answer, so it is not kept.
            text = "" if why else "".join(b.text for b in response.content if b.type == "text")
            usage = response.usage
            refused = {0: why} if why else {}
            return Completion([text], int(usage.input_tokens), int(usage.output_tokens), refused)
        except (AttributeError, TypeError, ValueError) as exc:
            raise MalformedResponse(f"not a Messages API response ({exc})") from None

    def _failure_of(self, exc: Exception) -> Failure | None:
        import anthropic

        if isinstance(exc, anthropic.APIStatusError):
            return Failure(exc.status_code, exc.response.headers, exc.message)
        if isinstance(exc, anthropic.APIConnectionError):
            return Failure(None, {}, f"{type(exc).__name__}: {exc}", transient=True)
        if isinstance(exc, anthropic.APIResponseValidationError | ValueError):
            return Failure(None, {}, f"malformed response: {exc}", malformed=True)
        return None
