"""A Tinker-protocol HTTP server on 127.0.0.1, for testing the tinker backend under the real SDK.

It speaks the routes, JSON bodies and protobuf payloads ``tinker`` 0.38 uses: the client config
and session handshake, futures (``/retrieve_future`` long-polls, then answers ``try_again``),
``X-API-Key`` authentication, protobuf ``forward_backward`` requests (zstd when the client config
says so) and protobuf results for ``forward_backward`` and ``sample``. Work runs one request at a
time on a worker thread, in arrival order, which is the order the SDK submits a training run's
requests in (it sequences them by ``seq_id`` before sending).

``events`` records what arrived, in order, so tests can check the client's behaviour (pipelining,
protobuf, what was never sent).
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import zstandard

from . import wire
from .engine import Engine, UserError
from .export import Exports

PROTO = "application/x-protobuf"
LONG_POLL_S = 5.0
_FINISH = re.compile(r"^/api/v1/sessions/([^/]+)/finish$")
_SAMPLER = re.compile(r"^/api/v1/samplers/([^/]+)$")
_CHECKPOINTS = re.compile(r"^/api/v1/training_runs/([^/]+)/checkpoints$")
_EXPORT_URLS = re.compile(
    r"^/api/v1/training_runs/([^/]+)/checkpoints/external_weights/([^/]+)/external_weights_urls$"
)
_CHECKPOINT = re.compile(r"^/api/v1/training_runs/([^/]+)/checkpoints/(.+)$")
_SIGNED = re.compile(r"^/signed/([0-9a-f]+)$")
_TRAINING_RUN = re.compile(r"^/api/v1/training_runs/([^/]+)$")


@dataclass
class _Pending:
    future: Future
    proto: bool  # the result is protobuf bytes (else a JSON-able dict)


class TinkerTestServer:
    """``with TinkerTestServer(root, {"evsys/tiny-llama": path}) as server: server.url``."""

    def __init__(self, root: Path, base_models: dict[str, Path], api_key: str = "tml-test-key"):
        self.api_key = api_key
        self.engine = Engine(root=root, base_models=base_models)
        self.events: list[tuple[str, ...]] = []
        self._pending: dict[str, _Pending] = {}
        self.delays: dict[str, float] = {}
        """Seconds a kind of request ("forward_backward", …) takes at least: makes overlap visible."""
        self._jobs: queue.Queue[tuple[str, str, Future, Callable[[], Any]] | None] = queue.Queue()
        self._ids = itertools.count()
        self._seed = itertools.count()
        handler = type("Handler", (_Handler,), {"app": self})
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.exports = Exports(root / "exports", origin=self.url.replace("127.0.0.1", "localhost"))
        """External weights exports and their signed URLs (see export.py)."""
        self._threads = [
            threading.Thread(target=self._http.serve_forever, daemon=True),
            threading.Thread(target=self._work, daemon=True),
        ]

    def __enter__(self) -> TinkerTestServer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._jobs.put(None)

    # -- futures ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            kind, request_id, future, fn = job
            time.sleep(self.delays.get(kind, 0.0))
            try:
                future.set_result(fn())
            except UserError as exc:
                future.set_result({"error": str(exc), "category": "user"})
            except Exception as exc:  # reported to the client, like a server-side failure
                future.set_result({"error": f"{type(exc).__name__}: {exc}", "category": "server"})
            self.events.append(("done", kind, request_id))

    def submit(
        self, kind: str, fn: Callable[[], Any], *, proto: bool = False, **extra: Any
    ) -> dict:
        request_id = f"req-{next(self._ids)}"
        future: Future = Future()
        self._pending[request_id] = _Pending(future, proto)
        self.events.append(("submit", kind, request_id))
        self._jobs.put((kind, request_id, future, fn))
        return {"request_id": request_id, **extra}

    def retrieve(self, request_id: str) -> tuple[int, Any, bool]:
        """(status, body, is_protobuf) for ``/retrieve_future``."""
        pending = self._pending.get(request_id)
        if pending is None:
            return 404, {"detail": f"unknown request_id {request_id}"}, False
        self.events.append(("retrieve", request_id))
        try:
            result = pending.future.result(timeout=LONG_POLL_S)
        except TimeoutError:
            return (
                200,
                {"type": "try_again", "request_id": request_id, "queue_state": "active"},
                False,
            )
        is_error = isinstance(result, dict) and "error" in result
        return 200, result, pending.proto and not is_error

    # -- routes ----------------------------------------------------------------------------------

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        e = self.engine
        if method == "GET" and path == "/api/v1/get_server_capabilities":
            models = [
                {"model_name": m, "trainable": True, "sampleable": True} for m in e.base_models
            ]
            return 200, {"supported_models": models}
        if method == "GET" and (m := _SAMPLER.match(path)):
            s = e.sampler(m.group(1))
            return 200, {
                "sampler_id": s.sampler_id,
                "base_model": s.base_model,
                "model_path": s.model_path,
            }
        if method == "GET" and (m := _CHECKPOINTS.match(path)):
            return 200, {"checkpoints": e.checkpoints(m.group(1))}
        if method == "GET" and (m := _TRAINING_RUN.match(path)):
            return 200, e.training_run(m.group(1))
        if method == "GET" and (m := _EXPORT_URLS.match(path)):
            self.events.append(("external_weights_urls", m.group(1), m.group(2)))
            return self.exports.urls(m.group(1), m.group(2))
        if method == "DELETE" and (m := _CHECKPOINT.match(path)):
            return self.exports.delete(m.group(1), m.group(2))
        if m := _FINISH.match(path):
            self.events.append(("finish", m.group(1)))
            return 200, {}
        handlers: dict[str, Callable[[Any], tuple[int, Any]]] = {
            "/api/v1/client/config": lambda b: (
                200,
                {"pjwt_auth_enabled": False, "proto_compress_fwdbwd": True},
            ),
            "/api/v1/client/dynamic_config": lambda b: (200, {}),
            "/api/v1/telemetry": lambda b: (200, {"status": "accepted"}),
            "/api/v1/create_session": lambda b: (
                200,
                {"type": "create_session", "session_id": f"s{uuid.uuid4().hex[:8]}"},
            ),
            "/api/v1/session_heartbeat": lambda b: (200, {"type": "session_heartbeat"}),
            "/api/v1/cancel_future": lambda b: (200, {}),
            "/api/v1/get_info": lambda b: (200, e.info(b["model_id"])),
            "/api/v1/create_model": self._create_model,
            "/api/v1/forward_backward": self._forward_backward,
            "/api/v1/optim_step": self._optim_step,
            "/api/v1/save_weights": self._save_weights,
            "/api/v1/save_weights_for_sampler": self._save_weights_for_sampler,
            "/api/v1/save_weights_external": self._save_weights_external,
            "/api/v1/load_weights": self._load_weights,
            "/api/v1/create_sampling_session": self._create_sampling_session,
            "/api/v1/asample": self._asample,
        }
        if method != "POST" or path not in handlers:
            return 404, {"detail": f"no route {method} {path}"}
        return handlers[path](body)

    def _create_model(self, b: dict) -> tuple[int, Any]:
        model_id = f"{b['session_id']}:train:{b['model_seq_id']}"
        rank = (b.get("lora_config") or {}).get("rank", 32)
        job = partial(self.engine.create_model, model_id, b["base_model"], rank)
        return 200, self.submit("create_model", job, model_id=model_id)

    def _forward_backward(self, b: dict) -> tuple[int, Any]:
        def job() -> bytes:
            outputs, metrics = self.engine.forward_backward(
                b["model_id"], b["data"], b["loss_fn"], b["config"], b["forward_only"]
            )
            return wire.encode_forward_backward(outputs, metrics)

        kind = "forward" if b["forward_only"] else "forward_backward"
        return 200, self.submit(kind, job, proto=True, model_id=b["model_id"])

    def _optim_step(self, b: dict) -> tuple[int, Any]:
        params = b.get("adam_params") or b.get("optimizer_params") or {}
        job = partial(self.engine.optim_step, b["model_id"], params)
        return 200, self.submit("optim_step", job, model_id=b["model_id"])

    def _save_weights(self, b: dict) -> tuple[int, Any]:
        name = b.get("path") or f"state-{b.get('seq_id')}"

        def job() -> dict:
            return {
                "path": self.engine.save(b["model_id"], name, "weights"),
                "type": "save_weights",
            }

        return 200, self.submit("save_weights", job, model_id=b["model_id"])

    def _save_weights_for_sampler(self, b: dict) -> tuple[int, Any]:
        model_id, kind = b["model_id"], "save_weights_for_sampler"
        session = model_id.split(":train:")[0]
        sampler_id = f"{session}:sample:{b.get('sampling_session_seq_id')}"

        def job() -> dict:
            if b.get("path"):  # named sampler weights, kept for later sampling clients
                return {
                    "path": self.engine.save(model_id, b["path"], "sampler_weights"),
                    "type": kind,
                }
            self.engine.sampler_from_run(sampler_id, model_id)  # an ephemeral sampler
            return {"sampling_session_id": sampler_id, "type": kind}

        return 200, self.submit(kind, job, model_id=model_id)

    def _save_weights_external(self, b: dict) -> tuple[int, Any]:
        def job() -> dict:
            run = self.engine.runs[b["model_id"]]
            base = self.engine._base(run.base_model)[0]
            return self.exports.save(run.model_id, b["path"], base, run.model, run.lora_rank)

        return 200, self.submit("save_weights_external", job, model_id=b["model_id"])

    def _load_weights(self, b: dict) -> tuple[int, Any]:
        model_id = b.get("model_id") or f"{b['session_id']}:train:{b['model_seq_id']}"

        def job() -> dict:
            self.engine.load(model_id, b["path"], b["optimizer"], b.get("base_model"))
            return {"path": b["path"], "model_id": model_id, "type": "load_weights"}

        return 200, self.submit("load_weights", job, model_id=model_id)

    def _create_sampling_session(self, b: dict) -> tuple[int, Any]:
        sampler_id = f"{b['session_id']}:sample:{b['sampling_session_seq_id']}"
        try:
            self.engine.sampler_from_path(sampler_id, b.get("model_path"), b.get("base_model"))
        except UserError as exc:
            return 400, {"detail": str(exc)}
        return 200, {"type": "create_sampling_session", "sampling_session_id": sampler_id}

    def _asample(self, b: dict) -> tuple[int, Any]:
        tokens = [t for chunk in b["prompt"]["chunks"] for t in chunk["tokens"]]
        n, seed = b.get("num_samples", 1), next(self._seed)

        def job() -> bytes:
            sequences, scored = self.engine.sample(
                b["sampling_session_id"],
                tokens,
                n,
                b["sampling_params"],
                bool(b.get("prompt_logprobs")),
                seed,
            )
            return wire.encode_sample(sequences, scored)

        ids = [f"seq-{uuid.uuid4().hex[:8]}" for _ in range(n)]
        return 200, self.submit("sample", job, proto=True, sample_sequence_ids=ids)


class _Handler(BaseHTTPRequestHandler):
    app: TinkerTestServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pools expect

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows failures, not access logs

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        if path == "/api/v1/healthz":
            return self._send(200, {"status": "ok"})
        if m := _SIGNED.match(path):  # a signed URL: no key, the signature is the permission
            return self._signed(m.group(1))
        if self.headers.get("X-API-Key") != self.app.api_key:
            return self._send(401, {"detail": "Invalid API key"})
        if self.headers.get("Content-Encoding") == "zstd":
            raw = zstandard.ZstdDecompressor().decompress(raw)
        if self.headers.get("Content-Type", "").startswith(PROTO):
            self.app.events.append(("protobuf", path))
            body = wire.decode_forward_backward(raw)
        else:
            body = json.loads(raw) if raw else {}
        if path == "/api/v1/retrieve_future":
            status, result, proto = self.app.retrieve(body["request_id"])
            return self._send(status, result, proto=proto)
        try:
            status, result = self.app.route(method, path, body)
        except UserError as exc:
            status, result = 400, {"detail": str(exc)}
        self._send(status, result)

    def _signed(self, token: str) -> None:
        status, body, truncated, location = self.app.exports.fetch(token, dict(self.headers))
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if truncated else body)
        if truncated:
            self.close_connection = True

    def _send(self, status: int, body: Any, *, proto: bool = False) -> None:
        data = body if proto else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", PROTO if proto else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
