"""JSON requests to Fireworks' control plane (plain HTTP, no SDK), retried when transient.

Only what may go away when sent again is retried: a rate limit (429, honouring ``Retry-After``),
a server error (5xx) and a dropped connection. Everything else fails at once, "already exists"
above all (HTTP 409, gRPC ``ALREADY_EXISTS``): it is :class:`AlreadyExists`, for the deployer to
look at what exists, never a failure to try again. A 404 is :class:`NotFound`.

The API key goes to ``base_url`` only (never to a signed upload URL) and is scrubbed from every
error message.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from typing import Any

from evsys.errors import BackendError
from evsys.harness.openai_compatible import TransientHTTPError
from evsys.harness.retry import call_with_retry, retry_after_seconds

_ALREADY_EXISTS = 6  # google.rpc.Code, the "code" of a gRPC-gateway error body
_DETAIL_CHARS = 300


class AlreadyExists(BackendError):
    """The resource being created exists already (HTTP 409 / ALREADY_EXISTS)."""


class NotFound(BackendError):
    """The resource asked for does not exist (HTTP 404)."""


class FireworksApi:
    """Requests to ``base_url`` with the key; ``max_attempts`` tries of a transient failure."""

    def __init__(
        self,
        *,
        base_url: str,
        key: str,
        key_env: str,
        request_timeout_s: float,
        max_attempts: int,
        backoff_s: float,
        sleep: Callable[[float], None],
    ):
        self.base = base_url.rstrip("/")
        self._key, self._key_env = key, key_env
        self._timeout_s, self._backoff_s = request_timeout_s, backoff_s
        self._attempts = max_attempts
        self._sleep = sleep

    def call(
        self,
        step: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        still_pending: Callable[[int, str], bool] | None = None,
    ) -> Any:
        """The decoded reply; None when ``still_pending(code, body)`` says to ask again later."""
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        raw = self._retried(step, lambda: self._send(request, still_pending))
        if raw is None:
            return None
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise BackendError(f"Fireworks: {step}: not a JSON reply: {raw[:200]!r}") from None

    def get_or_none(self, step: str, path: str) -> dict[str, Any] | None:
        """The resource at ``path``; None when it does not exist."""
        try:
            found = self.call(step, "GET", path)
        except NotFound:
            return None
        return found if isinstance(found, dict) else {}

    def delete(self, step: str, path: str) -> None:
        """Delete the resource at ``path``; one that is gone already counts as deleted."""
        with contextlib.suppress(NotFound):
            self.call(step, "DELETE", path)

    def upload(self, name: str, url: str, data: bytes) -> None:
        """PUT ``data`` to a signed URL, without the key."""
        headers = {
            "Content-Type": "application/octet-stream",
            "x-goog-content-length-range": f"{len(data)},{len(data)}",
        }
        request = urllib.request.Request(url, data, headers, method="PUT")
        self._retried(f"upload {name}", lambda: self._send(request, None))

    def _retried(self, step: str, send: Callable[[], bytes | None]) -> bytes | None:
        try:
            return call_with_retry(
                send,
                max_attempts=self._attempts,
                backoff_s=self._backoff_s,
                retry_if=lambda exc: isinstance(exc, TransientHTTPError),
                sleep=self._sleep,
            )
        except BackendError as exc:
            cause = exc.__cause__
            if isinstance(cause, AlreadyExists | NotFound):  # the caller decides what they mean
                raise type(cause)(self._scrub(f"Fireworks: could not {step}: {cause}")) from None
            raise BackendError(self._scrub(f"Fireworks: could not {step}: {exc}")) from None

    def _send(
        self, request: urllib.request.Request, still_pending: Callable[[int, str], bool] | None
    ) -> bytes | None:
        where = f"{request.get_method()} {urllib.parse.urlsplit(request.full_url).path}"
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as reply:
                return reply.read()
        except urllib.error.HTTPError as exc:
            with exc:  # it holds the connection open until closed
                body = exc.read(4096).decode("utf-8", "replace").strip()
                if still_pending is not None and still_pending(exc.code, body):
                    return None
                raise self._http_error(where, exc, body) from None
        except (urllib.error.URLError, HTTPException, OSError) as exc:  # refused, reset, timeout
            reason = getattr(exc, "reason", exc)
            raise TransientHTTPError(f"{where}: {type(reason).__name__}: {reason}") from None

    def _http_error(self, where: str, exc: urllib.error.HTTPError, body: str) -> BackendError:
        message = self._scrub(f"{where}: HTTP {exc.code} {exc.reason}: {body[:_DETAIL_CHARS]}")
        if exc.code == 409 or _says_already_exists(body):
            return AlreadyExists(message)
        if exc.code == 404:
            return NotFound(message)
        if exc.code == 429 or exc.code >= 500:
            seconds = retry_after_seconds(exc.headers) if exc.headers else None
            return TransientHTTPError(message, retry_after=seconds)
        if exc.code in (401, 403):
            message += f" (check the API key in {self._key_env} and the account id)"
        return BackendError(message)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "<redacted>") if self._key else text


def _says_already_exists(body: str) -> bool:
    """A gRPC-gateway error body (``{"code": 6, "message": …}``) or its status name."""
    if "ALREADY_EXISTS" in body:
        return True
    try:
        decoded = json.loads(body)
    except ValueError:
        return False
    return isinstance(decoded, dict) and decoded.get("code") == _ALREADY_EXISTS
