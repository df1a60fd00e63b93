"""An inference client for any OpenAI-compatible chat-completions HTTP API.

OpenAI itself, vLLM, SGLang, llama.cpp's server, LiteLLM, OpenRouter, … all serve
``POST <base_url>/chat/completions``. Only the standard library is used (no SDK to install).
The API key is read from the environment variable *named* by ``api_key_env`` when a request is
made: it is never part of a config, a log line or an error message. Every answered request is
metered (:mod:`evsys.clients.usage`): its latency always, its tokens when the response has a
``usage`` field, its cost when the model has a price (``price``, else the shipped table).
Retries follow the hosted clients' one policy (:func:`evsys.harness.retry.worth_retrying`):
malformed bodies too. A refusal or content filter raises
:class:`~evsys.harness.retry.Refused`, metered and never retried.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from evsys.clients.refusals import openai_choice
from evsys.clients.usage import Price, UsageMeter, lookup_any_price, warn_unpriced
from evsys.config import Strict
from evsys.errors import BackendError, ConfigError
from evsys.harness.retry import (
    TRANSIENT_STATUS,
    MalformedResponse,
    Refused,
    TransientError,
    call_with_retry,
    retry_after_seconds,
    transient_status,
    worth_retrying,
)
from evsys.registry import register_inference

if TYPE_CHECKING:
    import urllib.error

DEFAULT_BASE_URL = "https://api.openai.com/v1"
BASE_URL_ENV = "OPENAI_BASE_URL"
TransientHTTPError = TransientError
"""The name deploy code retries by (:mod:`evsys.deploy.fireworks`)."""
__all__ = ["TRANSIENT_STATUS", "OpenAICompatibleClient", "TransientHTTPError"]


@register_inference("openai_compatible")
class OpenAICompatibleClient:
    """Chat completions from an OpenAI-compatible endpoint, retried with exponential backoff."""

    reports_usage: ClassVar[bool] = True

    class Config(Strict):
        model: str | None = Field(
            None, description="Model id the endpoint serves (e.g. gpt-4o-mini). Required."
        )
        base_url: str | None = Field(
            None,
            description=f"API root, up to /v1. None: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL}.",
        )
        api_key_env: str | None = Field(
            "OPENAI_API_KEY",
            description="NAME of the environment variable holding the API key (the key itself "
            "never goes in a config). Unset variable or None: no Authorization header (local "
            "servers).",
        )
        timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for one response.")
        max_attempts: int = Field(3, ge=1, description="Tries per call, the first included.")
        backoff_s: float = Field(
            1.0, ge=0, description="Wait after the first failed try; doubles per try."
        )
        max_backoff_s: float = Field(30.0, ge=0, description="Longest wait between tries.")
        extra_body: dict[str, Any] = Field(
            default_factory=dict,
            description="Extra request fields (top_p, seed, a vendor's options), sent as given.",
        )
        price: Price | None = Field(
            None,
            description="USD per million tokens in and out. None: the shipped price table "
            "(evsys/clients/prices.yaml) when it lists the model, else no cost_usd (a local "
            "server such as vLLM, a deployed adapter).",
        )

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
        **params: Any,
    ):
        """``sleep`` and ``on_retry`` (told of every retry) are for tests and the eval harness."""
        self.cfg = self.Config(**params)
        if not self.cfg.model:
            raise ConfigError(
                "the openai_compatible inference client needs `model` (the API's model id)"
            )
        base = self.cfg.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self.url = base.rstrip("/") + "/chat/completions"
        self._sleep, self._on_retry = sleep, on_retry
        price = self.cfg.price or lookup_any_price(self.cfg.model)
        if price is None:
            warn_unpriced("openai_compatible", self.cfg.model)
        self.usage = UsageMeter(price, self.cfg.model)

    def generate(
        self,
        *,
        prompt: str | list[dict[str, Any]],
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> str:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        body: dict[str, Any] = {
            **self.cfg.extra_body,
            "model": self.cfg.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if stop:
            body["stop"] = list(stop)
        payload = json.dumps(body).encode("utf-8")
        return call_with_retry(
            lambda: self._post(payload),
            max_attempts=self.cfg.max_attempts,
            backoff_s=self.cfg.backoff_s,
            max_backoff_s=self.cfg.max_backoff_s,
            retry_if=worth_retrying,
            on_retry=self._on_retry,
            sleep=self._sleep,
        )

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, payload: bytes) -> str:
        # Imported on the first request: urllib.request loads ssl (≈ 10 ms), and every command
        # that loads the inference registry (`evsys validate`) imports this module.
        import urllib.error
        import urllib.request
        from http.client import HTTPException

        request = urllib.request.Request(self.url, data=payload, headers=self._headers())
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as response:
                raw = response.read()
            latency = time.monotonic() - started
        except urllib.error.HTTPError as exc:
            with exc:  # it holds the connection open until closed
                raise self._http_error(exc) from None
        except (urllib.error.URLError, HTTPException, OSError) as exc:  # refused, reset, timeout
            reason = getattr(exc, "reason", exc)
            raise TransientError(f"{self.url}: {type(reason).__name__}: {reason}") from None
        try:
            answer = json.loads(raw)
            choice = answer["choices"][0]
            message = choice["message"]
            content, refused = openai_choice(
                choice.get("finish_reason"),
                message.get("content"),
                message.get("refusal"),
                message.get("tool_calls"),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise MalformedResponse(
                f"{self.url}: not a chat-completions response: {raw[:200]!r}"
            ) from None
        self.usage.record(*_token_counts(answer), latency, refused=int(refused is not None))
        if refused is not None:
            raise Refused({0: f"openai_compatible {self.cfg.model}: {refused}"})
        return content

    def _http_error(self, exc: urllib.error.HTTPError) -> BackendError:
        detail = exc.read()[:300].decode("utf-8", "replace").strip()
        message = f"{self.url}: HTTP {exc.code} {exc.reason}: {detail}"
        if transient_status(exc.code):
            seconds = retry_after_seconds(exc.headers) if exc.headers else None
            return TransientError(message, retry_after=seconds)
        if exc.code in (401, 403) and self.cfg.api_key_env:
            present = "is set" if os.environ.get(self.cfg.api_key_env) else "is NOT set"
            message += f" (the API key variable {self.cfg.api_key_env} {present})"
        return BackendError(message)


def _token_counts(answer: Any) -> tuple[int | None, int | None]:
    """``(prompt_tokens, completion_tokens)`` of a response's ``usage``; (None, None) when it has
    none or they are not counts (servers may leave usage out, or send null)."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return None, None
    counts = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        return None, None
    return counts
