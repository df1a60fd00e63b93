"""Reaching a Tinker service: the API key from the environment, a fast health probe, and SDK
failures turned into one clear :class:`BackendError`.

The SDK retries an unreachable service for up to 300 s before it gives up, so a wrong URL would
look like a hang; a plain ``GET /api/v1/healthz`` with a short timeout answers first. The API key
is read from an environment variable named in the config — the key itself is never part of a
config, a log or an error message.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from evsys.config import Strict
from evsys.errors import BackendError, MissingDependencyError

HEALTHZ = "/api/v1/healthz"


class ConnectionParams(Strict):
    """Where the Tinker service is and how long to wait for it; shared by the backend and its
    inference client."""

    base_url: str | None = Field(
        None,
        description="Tinker API URL, e.g. http://127.0.0.1:8000 for a self-hosted server. "
        "None: $TINKER_BASE_URL, else the hosted Tinker service.",
    )
    api_key_env: str = Field(
        "TINKER_API_KEY",
        description="Name of the environment variable that holds the API key (tml-…). The key "
        "itself never goes in a config.",
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, description="Health probe timeout: an unreachable service fails this fast."
    )
    request_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Longest wait for one result (model creation, a training step, a save, a "
        "batch of samples) before the run fails.",
    )

    def resolved_base_url(self) -> str:
        require_tinker()
        from tinker.lib.base_url import resolve_base_url

        return resolve_base_url(self.base_url)

    def api_key(self) -> str:
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise BackendError(
                f"no Tinker API key: set the environment variable {self.api_key_env} (or point "
                "backend.params.api_key_env at the variable that holds it)"
            )
        return key


def require_tinker() -> None:
    if importlib.util.find_spec("tinker") is None:
        raise MissingDependencyError("tinker", "tinker", "The tinker backend")


def probe(url: str, timeout_s: float) -> None:
    """Raise a BackendError unless ``url`` answers its health check within ``timeout_s``."""
    # Imported here: urllib.request pulls in http.client and ssl, which every command that loads
    # the backends (evsys validate) would pay for.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url + HEALTHZ, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()  # it holds the connection open until closed
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BackendError(
            f"the Tinker service at {url} is unreachable ({reason}) within {timeout_s:g} s; "
            "check backend.params.base_url (or $TINKER_BASE_URL) and that the service is up"
        ) from None
    if status != 200:
        raise BackendError(
            f"the Tinker service at {url} failed its health check (GET {HEALTHZ}: HTTP {status})"
        )


@dataclass
class Service:
    """A connected Tinker service."""

    client: Any
    """The ``tinker.ServiceClient``."""
    rest: Any
    """A ``tinker.RestClient`` of the same service."""
    url: str
    models: list[str]
    """The base models it serves (empty: it did not say)."""

    def check_model(self, name: str) -> None:
        if self.models and name not in self.models:
            raise BackendError(
                f"the Tinker service at {self.url} does not serve model '{name}'; "
                f"it serves: {', '.join(self.models)}"
            )


def connect(params: ConnectionParams) -> Service:
    """The service, once it has answered its health probe and accepted the API key (checked by
    fetching its capabilities, which also lists the models it serves)."""
    require_tinker()
    import tinker

    url, key = params.resolved_base_url(), params.api_key()
    probe(url, params.connect_timeout_s)
    with sdk_errors(f"connecting to the Tinker service at {url}", params):
        rest = tinker.RestClient(base_url=url, api_key=key)
        capabilities = wait(rest.get_server_capabilities(), params, "its capabilities")
    models = [m.model_name for m in capabilities.supported_models if m.model_name]
    return Service(tinker.ServiceClient(base_url=url, api_key=key), rest, url, models)


def wait(future: Any, params: ConnectionParams, what: str) -> Any:
    """``future.result()``, failing after ``request_timeout_s`` instead of waiting forever."""
    try:
        return future.result(timeout=params.request_timeout_s)
    except TimeoutError:
        raise BackendError(
            f"the Tinker service did not deliver {what} within {params.request_timeout_s:g} s "
            "(backend.params.request_timeout_s)"
        ) from None


@contextmanager
def sdk_errors(doing: str, params: ConnectionParams) -> Iterator[None]:
    """Re-raise the SDK's exceptions as a BackendError that says what was being done."""
    from tinker import _exceptions as errors

    try:
        yield
    except BackendError:
        raise
    except errors.AuthenticationError:
        raise BackendError(
            f"{doing}: the service rejected the API key in ${params.api_key_env} (HTTP 401)"
        ) from None
    except errors.PermissionDeniedError as exc:
        raise BackendError(f"{doing}: permission denied (HTTP 403): {_detail(exc)}") from None
    except errors.APIStatusError as exc:
        raise BackendError(f"{doing}: HTTP {exc.status_code}: {_detail(exc)}") from None
    except errors.RequestFailedError as exc:
        # "Request failed: <server message> for self.request_id=… and expected type …"
        message = str(exc).removeprefix("Request failed: ").split(" for self.request_id=")[0]
        raise BackendError(f"{doing}: {message}") from None
    except errors.APIConnectionError as exc:
        raise BackendError(f"{doing}: the connection failed: {exc}") from None
    except errors.TinkerError as exc:  # e.g. a key without the tml- prefix
        raise BackendError(f"{doing}: {exc} (the key comes from ${params.api_key_env})") from None


def _detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    return str(getattr(exc, "message", exc))
