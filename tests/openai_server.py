"""A local OpenAI-compatible chat-completions server for tests: the remote API's test double.

It speaks the real protocol (``POST /v1/chat/completions``, JSON in and out, Bearer auth, HTTP
error codes, ``Retry-After``) on 127.0.0.1, fails on purpose when told to, and answers arithmetic
questions ("What is 50 + 34?") with the right sum, so a correct client scores 1.0 on them.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_SUM = re.compile(r"What is (\d+) ([+-]) (\d+)\?")
FAILURES = ("500", "503", "429", "400", "reset")


def arithmetic_answer(prompt: str) -> str:
    found = _SUM.search(prompt)
    if not found:
        return "I do not know."
    a, b = int(found[1]), int(found[3])
    return f"<answer>{a + b if found[2] == '+' else a - b}</answer>"


class FakeChatServer:
    """``failures``: how the next calls fail, in order (``500``, ``503``, ``429``, ``400``,
    ``reset``); ``always_fail``: requests whose prompt contains this text, or that name this
    model, fail every time (with ``500``); ``respond``: computes the answer to a request's
    messages (default: the arithmetic answer to the last one)."""

    def __init__(
        self,
        failures: list[str] | None = None,
        always_fail: str | None = None,
        api_key: str | None = None,
        respond: Callable[[list[dict[str, Any]]], str] | None = None,
    ):
        self.respond = respond or (lambda messages: arithmetic_answer(messages[-1]["content"]))
        self.failures = list(failures or [])
        self.always_fail = always_fail
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeChatServer:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def next_failure(self, prompt: str, model: str) -> str | None:
        with self.lock:
            if self.always_fail is not None and (
                self.always_fail in prompt or self.always_fail == model
            ):
                return "500"
            return self.failures.pop(0) if self.failures else None


def _handler(fake: FakeChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:  # quiet test output
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with fake.lock:
                fake.requests.append({"path": self.path, "headers": dict(self.headers), **body})
            if self.path != "/v1/chat/completions":
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                return self._json(401, {"error": {"message": "invalid api key"}})
            if not isinstance(body.get("messages"), list) or "model" not in body:
                return self._json(400, {"error": {"message": "model and messages required"}})
            prompt = body["messages"][-1]["content"]
            failure = fake.next_failure(prompt, body["model"])
            if failure == "reset":  # a connection reset: close with RST, answer nothing
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True
                return
            if failure is not None:
                headers = {"Retry-After": "0"} if failure == "429" else {}
                return self._json(int(failure), {"error": {"message": "injected"}}, headers)
            content = fake.respond(body["messages"])
            self._json(
                200,
                {
                    "id": f"chatcmpl-{len(fake.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                },
            )

        def _json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
