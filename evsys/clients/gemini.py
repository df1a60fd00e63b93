"""``gemini``: Google's generateContent through the official ``google-genai`` SDK."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from evsys.clients.base import Completion, Failure, HostedClient, HostedConfig, MalformedResponse
from evsys.clients.content import Message, gemini_request
from evsys.clients.refusals import gemini_prompt_block, gemini_refusal
from evsys.registry import register_inference

_SECONDS = re.compile(r"^(\d+(?:\.\d+)?)s$")


@register_inference("gemini")
class GeminiClient(HostedClient):
    """Gemini generateContent (``pip install 'evsys[gemini]'``); ``n`` samples are candidates
    of one request."""

    vendor, sdk_module, extra = "gemini", "google.genai", "gemini"
    max_samples_per_call = 8  # the API's limit on candidate_count

    class Config(HostedConfig):
        base_url: str | None = Field(
            None,
            description="API root, without the version. None: the SDK's default "
            "(https://generativelanguage.googleapis.com).",
        )
        api_key_env: str | None = Field(
            "GEMINI_API_KEY",
            description="NAME of the environment variable holding the API key (never the key "
            "itself). None: no real key (a local server that checks none).",
        )

    def _connect(self, sdk: Any, api_key: str) -> Any:
        from google.genai import types

        options = types.HttpOptions(
            base_url=self.cfg.base_url,
            api_version="v1beta",
            timeout=int(self.cfg.timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),  # call_with_retry retries
        )
        return sdk.Client(api_key=api_key, http_options=options)

    def _request(self, messages: list[Message], max_tokens: int, stop: list[str]) -> dict[str, Any]:
        system, contents = gemini_request(messages)
        config = {
            **self.cfg.request_params,
            "max_output_tokens": max_tokens,
            **({"system_instruction": system} if system else {}),
            **({"stop_sequences": stop} if stop else {}),
        }
        return {"model": self.cfg.model, "contents": contents, "config": config}

    def _with_temperature(self, request: dict[str, Any], temperature: float) -> dict[str, Any]:
        return {**request, "config": {"temperature": temperature, **request["config"]}}

    def _call(self, client: Any, request: dict[str, Any], n: int) -> Completion:
        config = {**request["config"], **({"candidate_count": n} if n > 1 else {})}
        response = client.models.generate_content(**{**request, "config": config})
        try:
            usage = response.usage_metadata
            tokens = int(usage.prompt_token_count or 0), int(usage.candidates_token_count or 0)
            feedback = response.prompt_feedback
            blocked = gemini_prompt_block(feedback.block_reason) if feedback else None
            if blocked is not None:  # no candidates: every sample asked for is refused
                return Completion([""] * n, *tokens, dict.fromkeys(range(n), blocked))
            texts, refused = [], {}
            for i, candidate in enumerate(response.candidates):
                why = gemini_refusal(candidate.finish_reason)
                if why is not None:  # its content is empty, or cut where the filter stopped it
                    refused[i] = why
                texts.append("" if why else _text(candidate.content))
            return Completion(texts, *tokens, refused)
        except (AttributeError, TypeError, ValueError) as exc:
            raise MalformedResponse(f"not a generateContent response ({exc})") from None

    def _failure_of(self, exc: Exception) -> Failure | None:
        from google.genai import errors

        if isinstance(exc, errors.APIError):
            headers = getattr(exc.response, "headers", None) or {}
            return Failure(
                exc.code, headers, str(exc.message or exc), retry_after=_retry_delay(exc)
            )
        if isinstance(exc, _transport_errors()):
            return Failure(None, {}, f"{type(exc).__name__}: {exc}", transient=True)
        if isinstance(exc, ValueError):  # a body that is not JSON, or not a response
            return Failure(None, {}, f"malformed response: {exc}", malformed=True)
        return None


def _text(content: Any) -> str:
    """A candidate's answer: its text parts, its thoughts left out; content None (no answer,
    and no filter said why) is a malformed response."""
    return "".join(p.text or "" for p in (content.parts or []) if not p.thought)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Dropped connections and timeouts of the HTTP libraries the SDK sends through (it takes
    httpx, and newer versions httpx2)."""
    import importlib

    found = []
    for name in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _retry_delay(exc: Any) -> float | None:
    """The ``retryDelay`` of a google.rpc.RetryInfo detail ("7s"), which Gemini's 429 carries."""
    details = (
        exc.details.get("error", {}).get("details", []) if isinstance(exc.details, dict) else []
    )
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            found = _SECONDS.match(str(detail.get("retryDelay", "")))
            if found:
                return float(found[1])
    return None
