"""A Tinker-protocol test server backed by a tiny torch model: a test double for the hosted
Tinker service, which the tests cannot reach, spoken to by the real, unmodified ``tinker`` SDK."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .server import TinkerTestServer

__all__ = [
    "API_KEY",
    "TINY",
    "TinkerTestServer",
    "sdk_clients_closed",
    "serving_tiny",
    "tiny_server",
]

TINY = "evsys/tiny-llama"
API_KEY = "tml-evsys-test-4f1c9e0a7b"


def tiny_server(root: Path, api_key: str = API_KEY) -> TinkerTestServer:
    """A server that serves evsys's tiny Llama (built locally on first use)."""
    from evsys.backends.local.models import resolve_model_path

    return TinkerTestServer(root, {TINY: resolve_model_path(TINY)}, api_key=api_key)


@contextmanager
def serving_tiny(root: Path) -> Iterator[TinkerTestServer]:
    """The tiny server, running, with the SDK's key in ``$TINKER_API_KEY`` and no
    ``$TINKER_BASE_URL``; the SDK's clients are closed at the end (a module fixture's body)."""
    with tiny_server(root) as running, sdk_clients_closed(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINKER_API_KEY", API_KEY)
        mp.delenv("TINKER_BASE_URL", raising=False)
        yield running


@contextmanager
def sdk_clients_closed() -> Iterator[None]:
    """Close, on the SDK's own event loop, every HTTP client the SDK opened meanwhile.

    tinker 0.38 leaves some of its clients open: the one-off pool each session fetches
    ``/client/config`` with, the telemetry pool that a session's last flush opens after it closed
    its pools, and the process-wide pool of ``RestClient``. Garbage-collected later, in whatever
    test runs then, they warn about unclosed sockets (an error under this suite's warning
    filter). Every SDK client is an ``AsyncHttpxClientWrapper``: keep each one until the end
    here, then close it. Remove once the SDK closes its own clients.
    """
    from tinker import _base_client
    from tinker.lib.internal_client_holder import _internal_client_holder_thread_singleton

    opened: list[Any] = []
    original = _base_client.AsyncHttpxClientWrapper.__init__

    def keep(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        opened.append(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_base_client.AsyncHttpxClientWrapper, "__init__", keep)
        yield
    loop = _internal_client_holder_thread_singleton.get_loop()
    for client in opened:
        if not client.is_closed:
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=10)
    opened.clear()
    gc.collect()
