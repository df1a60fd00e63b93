"""What the hosted clients share: settings, the key, retries, the concurrency cap, usage.

A vendor module subclasses :class:`HostedClient` with the three things that differ: how its SDK
client is made (``_connect``), how one request is sent and read (``_call``), and what a failure
says (``_failure_of``: its HTTP status and headers). Everything else is here, once:

- the key is read from the environment variable named by ``api_key_env`` and handed to the SDK;
  it is never part of a config, a log line or an error message;
- the SDK's own retries are off (``max_retries=0``): every call goes through
  :func:`evsys.harness.retry.call_with_retry` with the shared policy
  (:func:`~evsys.harness.retry.worth_retrying`), which retries rate limits (429, honouring
  ``Retry-After``), overload (529), server errors, dropped connections and malformed bodies,
  and nothing else;
- a refusal, content filter or safety block raises :class:`~evsys.harness.retry.Refused`
  (``_call`` says which samples were refused): not retried, never an empty answer;
- at most ``concurrency`` requests are in flight at once, however many threads ask;
- every answered request is metered (:mod:`evsys.clients.usage`), refused ones included.
"""

from __future__ import annotations

import importlib
import inspect
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

from pydantic import Field

from evsys.clients.content import Message, as_messages, with_system
from evsys.clients.retry import (
    MalformedResponse,
    Refused,
    TransientError,
    answer_or_refusal,
    call_with_retry,
    retry_after_seconds,
    transient_status,
    worth_retrying,
)
from evsys.clients.usage import Price, UsageMeter, lookup_price, warn_unpriced
from evsys.config import Strict
from evsys.errors import BackendError, ConfigError, MissingDependencyError


class HostedConfig(Strict):
    model: str | None = Field(None, description="The vendor's model id. Required.")
    base_url: str | None = Field(
        None, description="API root to send requests to. None: the SDK's default (or its env var)."
    )
    api_key_env: str | None = Field(
        None,
        description="NAME of the environment variable holding the API key (the key itself never "
        "goes in a config). None: send no real key (a local server that checks none).",
    )
    timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for one response.")
    max_attempts: int = Field(3, ge=1, description="Tries per call, the first included.")
    backoff_s: float = Field(1.0, ge=0, description="Wait after the first failed try; doubles.")
    max_backoff_s: float = Field(
        60.0, ge=0, description="Longest wait between tries (a longer Retry-After is cut to it)."
    )
    concurrency: int = Field(8, ge=1, description="Most requests in flight at once.")
    system_prompt: str | None = Field(
        None, description="System turn for prompts that have none. None: prompts as they are."
    )
    send_temperature: bool = Field(
        True,
        description="Send the sampling temperature. False: send none (models that refuse one, "
        "such as reasoning models); they sample as they do by default.",
    )
    price: Price | None = Field(
        None,
        description="USD per million tokens in and out. None: the shipped price table "
        "(evsys/clients/prices.yaml); a model missing from it reports no cost_usd.",
    )
    request_params: dict[str, Any] = Field(
        default_factory=dict,
        description="More request fields sent as given (top_p, seed, a vendor's own options).",
    )


@dataclass
class Completion:
    texts: list[str]
    """One per sample asked for; "" where refused."""
    tokens_in: int
    tokens_out: int
    refused: dict[int, str] = field(default_factory=dict)
    """Sample → why the model declined it (:mod:`evsys.clients.refusals`)."""


@dataclass
class Failure:
    """What a vendor's exception says: the HTTP status (None: no answer came) and headers."""

    status: int | None
    headers: Mapping[str, str]
    detail: str
    transient: bool = False
    """For failures without a status: a dropped connection, a timeout, a malformed body."""
    retry_after: float | None = None
    malformed: bool = False
    """A body that is not the API's answer (not JSON): retried as a MalformedResponse."""


class HostedClient:
    """One hosted model. Subclasses set ``vendor``, ``sdk_module``, ``extra`` and ``Config``."""

    vendor: ClassVar[str]
    sdk_module: ClassVar[str]
    extra: ClassVar[str]
    max_samples_per_call: ClassVar[int] = 1
    reports_usage: ClassVar[bool] = True
    Config: ClassVar[type[HostedConfig]] = HostedConfig

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
            raise ConfigError(f"the {self.vendor} inference client needs `model` (a model id)")
        price = self.cfg.price or lookup_price(self.vendor, self.cfg.model)
        if price is None:
            warn_unpriced(self.vendor, self.cfg.model)
        self.usage = UsageMeter(price, self.cfg.model)
        self._sleep, self._on_retry = sleep, on_retry
        self._slots = threading.BoundedSemaphore(self.cfg.concurrency)
        self._sdk = self._connect(self._import_sdk(), self._api_key())
        # The SDK keeps a pool of open connections: close them when this client goes, since
        # callers of the inference protocol never close a client.
        close = getattr(self._sdk, "close", None)
        if callable(close):
            weakref.finalize(self, close)

    @property
    def concurrency(self) -> int:
        return self.cfg.concurrency

    # -- the inference protocol ------------------------------------------------------------

    def generate(
        self,
        *,
        prompt: str | list[Message],
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> str:
        return self.sample(
            prompt=prompt, n=1, max_tokens=max_tokens, temperature=temperature, stop=stop
        )[0]

    def sample(
        self,
        *,
        prompt: str | list[Message],
        n: int,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """``n`` completions of one prompt (pass@k): in one request where the API samples
        several, else in as many. Raises RetriesExhausted when a request keeps failing, and
        Refused (its ``completions``: the samples given, None where refused) when the model
        declined any of them."""
        messages = with_system(as_messages(prompt), self.cfg.system_prompt)
        request = self._request(messages, max_tokens, list(stop or ()))
        if self.cfg.send_temperature:
            request = self._with_temperature(request, temperature)
        texts: list[str | None] = []
        refused: dict[int, str] = {}
        while len(texts) < n:
            count = min(n - len(texts), self.max_samples_per_call)
            done = call_with_retry(
                lambda count=count: self._attempt(request, count),
                max_attempts=self.cfg.max_attempts,
                backoff_s=self.cfg.backoff_s,
                max_backoff_s=self.cfg.max_backoff_s,
                retry_if=worth_retrying,
                on_retry=self._on_retry,
                sleep=self._sleep,
            )
            refused |= {
                len(texts) + i: f"{self._where()}: {why}" for i, why in done.refused.items()
            }
            texts += [None if i in done.refused else t for i, t in enumerate(done.texts)]
        if refused:
            raise Refused(refused, texts)
        return texts  # type: ignore[return-value]  # None only where refused

    def generate_concurrently(
        self,
        prompts: Sequence[str | list[Message]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """One completion per prompt, ``concurrency`` requests at a time, in order; a prompt
        the model refused gets a :class:`RefusedAnswer` (empty, with why), not the whole batch
        an exception."""
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            futures = [
                pool.submit(
                    answer_or_refusal,
                    partial(
                        self.generate,
                        prompt=p,
                        max_tokens=max_tokens,
                        temperature=temperature,
                        stop=stop,
                    ),
                )
                for p in prompts
            ]
            return [f.result() for f in futures]

    # -- one request -------------------------------------------------------------------------

    def _attempt(self, request: dict[str, Any], n: int) -> Completion:
        """One request, metered when answered (a refusal is an answer: it was paid for)."""
        with self._slots:
            started = time.monotonic()
            try:
                done = self._call(self._sdk, request, n)
            except MalformedResponse as exc:
                raise MalformedResponse(f"{self._where()}: {exc}") from None
            except Exception as exc:
                raise self._error(exc) from None
            latency = time.monotonic() - started
        self.usage.record(done.tokens_in, done.tokens_out, latency, refused=len(done.refused))
        if len(done.texts) != n:
            raise MalformedResponse(
                f"{self._where()}: asked for {n} samples, got {len(done.texts)}"
            )
        return done

    def _error(self, exc: Exception) -> BackendError:
        failure = self._failure_of(exc)
        if failure is None:  # not an API failure: a bug of ours or the SDK's, not retried
            return BackendError(f"{self._where()}: {type(exc).__name__}: {exc}")
        if failure.status is None:
            if failure.malformed:
                return MalformedResponse(f"{self._where()}: {failure.detail}")
            kind = TransientError if failure.transient else BackendError
            return kind(f"{self._where()}: {failure.detail}")
        message = f"{self._where()}: HTTP {failure.status}: {failure.detail[:300]}"
        if transient_status(failure.status):
            wait = failure.retry_after
            if wait is None:
                wait = retry_after_seconds(failure.headers)
            return TransientError(message, retry_after=wait)
        if failure.status in (401, 403) and self.cfg.api_key_env:
            present = "is set" if os.environ.get(self.cfg.api_key_env) else "is NOT set"
            message += f" (the API key variable {self.cfg.api_key_env} {present})"
        return BackendError(message)

    def _where(self) -> str:
        return f"{self.vendor} {self.cfg.model}"

    # -- set-up ------------------------------------------------------------------------------

    def _import_sdk(self) -> Any:
        try:
            return importlib.import_module(self.sdk_module)
        except ImportError:
            package = self.sdk_module.replace(".", "-")
            raise MissingDependencyError(
                package, self.extra, f"The {self.vendor} inference client"
            ) from None

    def _api_key(self) -> str:
        """The key from ``api_key_env``; a placeholder when None (the SDKs insist on one)."""
        name = self.cfg.api_key_env
        if name is None:
            return "no-key"
        key = os.environ.get(name)
        if not key:
            raise ConfigError(
                f"the {self.vendor} inference client reads its API key from the environment "
                f"variable {name}, which is not set: export it, or name another with "
                "api_key_env (null for a server that checks no key)"
            )
        return key

    # -- what each vendor provides -------------------------------------------------------------

    def _connect(self, sdk: Any, api_key: str) -> Any:
        raise NotImplementedError

    def _request(self, messages: list[Message], max_tokens: int, stop: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def _with_temperature(self, request: dict[str, Any], temperature: float) -> dict[str, Any]:
        return {"temperature": temperature, **request}  # request_params may set their own

    def _call(self, client: Any, request: dict[str, Any], n: int) -> Completion:
        raise NotImplementedError

    def _failure_of(self, exc: Exception) -> Failure | None:
        raise NotImplementedError


def call_sdk(method: Callable[..., Any], request: dict[str, Any]) -> Any:
    """``method(**request)``, the fields its signature does not name sent in ``extra_body``
    (a vendor option the installed SDK version does not know yet)."""
    named = accepts(method)
    known = {k: v for k, v in request.items() if k in named}
    extra = {k: v for k, v in request.items() if k not in named}
    if extra:
        known["extra_body"] = {**(known.get("extra_body") or {}), **extra}
    return method(**known)


def accepts(method: Callable[..., Any]) -> frozenset[str]:
    """The keyword arguments ``method`` names."""
    return frozenset(inspect.signature(method).parameters)
