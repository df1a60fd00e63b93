"""Local servers that speak the hosted vendors' wire protocols, for tests of their real SDKs.

One HTTP plumbing (:class:`VendorServer`: 127.0.0.1, a request log, auth, injected failures,
how many requests are in flight at once), and one subclass per protocol:

- :class:`OpenAIServer`: ``POST /v1/chat/completions`` (OpenAI chat completions);
- :class:`AnthropicServer`: ``POST /v1/messages`` (Anthropic messages);
- :class:`GeminiServer`: ``POST /v1beta/models/{model}:generateContent`` (Gemini).

Answers are computed, not canned: by default the arithmetic in the prompt is worked out ("What
is 50 + 34?" → ``<answer>84</answer>``; sampled above temperature 0, an answer is off by one half
the time), or a trained mock policy answers (``policy=``). Token counts are the words of the
prompt and of the answer. ``failures`` makes the next requests fail, in order: ``429`` (with
``Retry-After``), ``500``, ``503``, ``529`` (overloaded), ``409`` (a conflict), ``400``, ``reset`` (the connection is
cut), ``malformed`` (200 with a body that is not JSON) and ``wrong_shape`` (200 with JSON that
is not a response), and the vendor's refusals and hollow bodies (:mod:`vendor_bodies`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from vendor_bodies import BODIES, vendor_body
from vendor_policies import Policy, arithmetic_answer, rubric_judge  # noqa: F401 (re-exported)

FAILURES = ("500", "503", "529", "429", "409", "400", "reset", "malformed", "wrong_shape")


def count_tokens(text: str) -> int:
    return len(text.split())


class JSONHandler(BaseHTTPRequestHandler):
    """A quiet request handler that answers JSON (the test servers' shared plumbing)."""

    def log_message(self, *_: Any) -> None:  # quiet test output
        pass

    def _json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._raw(code, json.dumps(payload).encode(), headers)

    def _raw(self, code: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class VendorServer:
    """``failures``: how the next requests fail, in order; ``always_fail``: requests whose
    prompt contains this text, or that name this model, fail every time (with ``500``);
    ``api_key``: the key the auth header must carry; ``delay_s``: how long each answer takes."""

    path: ClassVar[re.Pattern[str]]
    protocol: ClassVar[str]

    def __init__(
        self,
        failures: list[str] | None = None,
        always_fail: str | None = None,
        api_key: str | None = None,
        *,
        policy: Policy = arithmetic_answer,
        retry_after: str = "0",
        delay_s: float = 0.0,
    ):
        unknown = set(failures or ()) - {*FAILURES, *BODIES[self.protocol]}
        assert not unknown, f"unknown failures {unknown}; known: {FAILURES}, {BODIES}"
        self.failures = list(failures or [])
        self.always_fail, self.api_key = always_fail, api_key
        self.policy, self.retry_after, self.delay_s = policy, retry_after, delay_s
        self.requests: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = self.samples = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.root

    def __enter__(self) -> VendorServer:
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

    def answers(self, prompt: str, n: int, temperature: float) -> list[str]:
        rngs: list[random.Random | None] = [None] * n
        if temperature > 0:
            with self.lock:
                first, self.samples = self.samples, self.samples + n
            rngs = [random.Random(_seed(prompt, first + i)) for i in range(n)]
        return [self.policy(prompt, rng) for rng in rngs]

    # -- what each protocol defines --------------------------------------------------------

    def authorized(self, headers: Any) -> bool:
        raise NotImplementedError

    def parse(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """``{model, system, messages: [(role, text)], n, max_tokens, temperature, stop}``;
        raises ValueError for a request the API would refuse."""
        raise NotImplementedError

    def respond(self, request: dict[str, Any], texts: list[str], finish: list[str]) -> Any:
        raise NotImplementedError

    def error_body(self, code: int, message: str) -> Any:
        return {"error": {"message": message, "code": code}}


def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def block_text(content: Any) -> str:
    """The text of a content (a string, or blocks in any vendor's shape)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    return " ".join(str(b.get("text", "")) for b in content or [] if isinstance(b, dict))


def _truncate(text: str, stop: list[str], max_tokens: int) -> tuple[str, str]:
    cut = [text.index(s) for s in stop if s and s in text]
    if cut:
        return text[: min(cut)], "stop"
    words = text.split(" ")
    if len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return text, "end"


def _handler(fake: VendorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(JSONHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' HTTP clients expect

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.loads(raw)
            path = self.path.split("?")[0]
            with fake.lock:
                fake.requests.append({"path": path, "headers": dict(self.headers), **body})
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            try:
                self._answer(path, body)
            finally:
                with fake.lock:
                    fake.in_flight -= 1

        def _answer(self, path: str, body: dict[str, Any]) -> None:
            if not fake.path.fullmatch(path):
                return self._json(404, fake.error_body(404, f"no route {path}"))
            if fake.api_key and not fake.authorized(self.headers):
                return self._json(401, fake.error_body(401, "invalid api key"))
            try:
                request = fake.parse(path, body)
            except (ValueError, KeyError, TypeError) as exc:
                return self._json(400, fake.error_body(400, f"bad request: {exc}"))
            with fake.lock:
                fake.requests[-1]["model"] = request["model"]
            request["tokens_in"] = count_tokens(
                " ".join([request["system"] or "", *(t for _, t in request["messages"])])
            )
            prompt = "\n".join(text for role, text in request["messages"] if role == "user")
            failure = fake.next_failure(prompt, request["model"])
            if fake.delay_s:
                time.sleep(fake.delay_s)
            if failure == "reset":  # a connection reset: close with RST, answer nothing
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True
                return None
            if failure == "malformed":
                return self._raw(200, b'{"id": "cut off in the mid')
            if failure == "wrong_shape":
                return self._json(200, {"status": "ok", "note": "not a response"})
            if failure in BODIES[fake.protocol]:
                finish = ["end"] * request["n"]
                body = vendor_body(
                    fake.protocol, failure, lambda t: fake.respond(request, t, finish), request["n"]
                )
                return self._json(200, body)
            if failure is not None:
                headers = {"Retry-After": fake.retry_after} if failure == "429" else {}
                return self._json(int(failure), fake.error_body(int(failure), "injected"), headers)
            last_user = next(
                (text for role, text in reversed(request["messages"]) if role == "user"), ""
            )
            answers = fake.answers(last_user, request["n"], request["temperature"])
            cut = [_truncate(a, request["stop"], request["max_tokens"]) for a in answers]
            texts = [text for text, _ in cut]
            return self._json(200, fake.respond(request, texts, [why for _, why in cut]))

    return Handler


# -- OpenAI chat completions -------------------------------------------------------------------


class OpenAIServer(VendorServer):
    path, protocol = re.compile(r"/v1/chat/completions"), "openai"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def authorized(self, headers: Any) -> bool:
        return headers.get("Authorization") == f"Bearer {self.api_key}"

    def parse(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body.get("messages"), list) or "model" not in body:
            raise ValueError("model and messages required")
        stop = body.get("stop") or []
        messages = [(m["role"], block_text(m.get("content"))) for m in body["messages"]]
        return {
            "model": body["model"],
            "system": None,
            "messages": messages,
            "n": int(body.get("n") or 1),
            "max_tokens": int(body.get("max_completion_tokens") or body.get("max_tokens") or 4096),
            "temperature": float(body.get("temperature", 1.0)),
            "stop": [stop] if isinstance(stop, str) else list(stop),
        }

    def respond(self, request: dict[str, Any], texts: list[str], finish: list[str]) -> Any:
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length" if why == "length" else "stop",
                }
                for i, (text, why) in enumerate(zip(texts, finish, strict=True))
            ],
            "usage": {
                "prompt_tokens": request["tokens_in"],
                "completion_tokens": sum(count_tokens(t) for t in texts),
                "total_tokens": request["tokens_in"] + sum(count_tokens(t) for t in texts),
            },
        }


# -- Anthropic messages ------------------------------------------------------------------------


class AnthropicServer(VendorServer):
    path, protocol = re.compile(r"/v1/messages"), "anthropic"

    def authorized(self, headers: Any) -> bool:
        # API keys travel as x-api-key; recent SDKs send them as a bearer token.
        return self.api_key in (
            headers.get("x-api-key"),
            (headers.get("Authorization") or "").removeprefix("Bearer "),
        )

    def parse(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if "max_tokens" not in body or not isinstance(body.get("messages"), list):
            raise ValueError("model, max_tokens and messages are required")
        if any(m.get("role") not in ("user", "assistant") for m in body["messages"]):
            raise ValueError("messages take the roles user and assistant (system goes apart)")
        temperature = float(body.get("temperature", 1.0))
        if not 0 <= temperature <= 1:
            raise ValueError("temperature: must be in [0, 1]")
        return {
            "model": body["model"],
            "system": block_text(body.get("system")) or None,
            "messages": [(m["role"], block_text(m["content"])) for m in body["messages"]],
            "n": 1,
            "max_tokens": int(body["max_tokens"]),
            "temperature": temperature,
            "stop": list(body.get("stop_sequences") or []),
        }

    def respond(self, request: dict[str, Any], texts: list[str], finish: list[str]) -> Any:
        (text,), (why,) = texts, finish
        stop_reason = {"stop": "stop_sequence", "length": "max_tokens"}.get(why, "end_turn")
        return {
            "id": f"msg_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": request["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": request["tokens_in"], "output_tokens": count_tokens(text)},
        }

    def error_body(self, code: int, message: str) -> Any:
        kinds = {429: "rate_limit_error", 529: "overloaded_error", 401: "authentication_error"}
        return {
            "type": "error",
            "error": {"type": kinds.get(code, "api_error"), "message": message},
        }


# -- Gemini generateContent --------------------------------------------------------------------


class GeminiServer(VendorServer):
    path = re.compile(r"/v1beta/models/(?P<model>[^/:]+):generateContent")
    protocol = "gemini"

    def authorized(self, headers: Any) -> bool:
        return headers.get("x-goog-api-key") == self.api_key

    def parse(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        found = self.path.fullmatch(path)
        assert found is not None
        config = body.get("generationConfig") or {}
        system = body.get("systemInstruction")
        messages = [
            ("assistant" if c.get("role") == "model" else "user", block_text(c.get("parts")))
            for c in body["contents"]
        ]
        return {
            "model": found["model"],
            "system": block_text((system or {}).get("parts")) or None,
            "messages": messages,
            "n": int(config.get("candidateCount") or 1),
            "max_tokens": int(config.get("maxOutputTokens") or 8192),
            "temperature": float(config.get("temperature", 1.0)),
            "stop": list(config.get("stopSequences") or []),
        }

    def respond(self, request: dict[str, Any], texts: list[str], finish: list[str]) -> Any:
        out = sum(count_tokens(t) for t in texts)
        return {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": "MAX_TOKENS" if why == "length" else "STOP",
                    "index": i,
                }
                for i, (text, why) in enumerate(zip(texts, finish, strict=True))
            ],
            "usageMetadata": {
                "promptTokenCount": request["tokens_in"],
                "candidatesTokenCount": out,
                "totalTokenCount": request["tokens_in"] + out,
            },
            "modelVersion": request["model"],
        }

    def error_body(self, code: int, message: str) -> Any:
        status = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
        error: dict[str, Any] = {"code": code, "message": message, "status": status.get(code, "X")}
        if code == 429:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{self.retry_after}s",
                }
            ]
        return {"error": error}


SERVERS: dict[str, type[VendorServer]] = {
    "openai": OpenAIServer,
    "claude": AnthropicServer,
    "gemini": GeminiServer,
}
"""The test server of each hosted inference client."""
