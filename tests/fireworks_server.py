"""A Fireworks-protocol control plane on 127.0.0.1 for tests: the calls the deployer makes.

It speaks the REST API of Fireworks' upload guide and API reference (the Gateway REST API: JSON
in and out, Bearer auth, gRPC-gateway error bodies ``{"code": <google.rpc.Code>, "message": …}``
with the matching HTTP status, e.g. 409 and code 6 for ALREADY_EXISTS): create, get and delete a
model, hand out signed upload URLs (served here too, checking each file's size and that no API
key is sent to them), validate the upload (with FAILED_PRECONDITION while files are "still
landing"), create, get and delete a deployment (CREATING, then READY; a deletion is DELETING for
a poll, then gone when hard, else kept as DELETED, its id still taken). A model that a deployment
still uses cannot be deleted (FAILED_PRECONDITION).

Failures are injected per route, in order, at construction or on command (:meth:`fail`): an HTTP
code, ``(HTTP code, gRPC code)`` (an error body with that code, e.g. ``(400, 6)``: ALREADY_EXISTS
under another status), ``0`` (this call goes through), ``reset`` (the connection is cut, nothing done) or
``lost_reply`` (the call is done, then the connection is cut before the reply).
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import urllib.parse
from http.server import ThreadingHTTPServer
from typing import Any

from vendor_servers import JSONHandler

_MODELS = re.compile(r"^/v1/accounts/([^/]+)/models$")
_MODEL = re.compile(r"^/v1/accounts/([^/]+)/models/([^/:]+)$")
_MODEL_ACTION = re.compile(
    r"^/v1/accounts/([^/]+)/models/([^/:]+):(getUploadEndpoint|validateUpload)$"
)
_DEPLOYMENTS = re.compile(r"^/v1/accounts/([^/]+)/deployments$")
_DEPLOYMENT = re.compile(r"^/v1/accounts/([^/]+)/deployments/([^/]+)$")
_UPLOAD = re.compile(r"^/upload/([^/]+)/([^/?]+)$")


ROUTES = (
    "create_model", "get_model", "delete_model", "upload_endpoint", "upload", "validate",
    "create_deployment", "get_deployment", "delete_deployment",
)  # fmt: skip
Failure = int | str | tuple[int, int]


class FakeFireworks:
    """``failures``: route name (one of ROUTES) → how its next calls fail, in order (see the
    module's doc); ``landing_polls``: validateUpload answers FAILED_PRECONDITION this many times
    first; ``creating_polls``: the deployment reports CREATING this many times before
    ``final_state``; ``deleting_polls``: a deleted deployment reports DELETING this many times."""

    def __init__(
        self,
        *,
        api_key: str = "fw-test-key",
        account: str = "acme",
        failures: dict[str, list[Failure]] | None = None,
        landing_polls: int = 1,
        creating_polls: int = 2,
        deleting_polls: int = 1,
        final_state: str = "READY",
    ):
        self.api_key, self.account = api_key, account
        self.lock = threading.Lock()
        self.failures: dict[str, list[Failure]] = {}
        for route, planned in (failures or {}).items():
            self.fail(route, *planned)
        self.landing_polls, self.creating_polls = landing_polls, creating_polls
        self.deleting_polls = deleting_polls
        self.final_state = final_state
        self.requests: list[dict[str, Any]] = []
        self.models: dict[str, dict[str, Any]] = {}
        self.uploads: dict[tuple[str, str], bytes] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.deleting_polls_left: dict[str, int] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )  # a short poll: shut down at once

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def routes(self) -> list[str]:
        return [r["route"] for r in self.requests]

    def fail(self, route: str, *failures: Failure) -> None:
        """Make the next calls of ``route`` fail so, in order (after those already planned)."""
        assert route in ROUTES, f"unknown route {route}; known: {ROUTES}"
        for failure in failures:
            assert isinstance(failure, int | tuple) or failure in ("reset", "lost_reply"), failure
        with self.lock:
            self.failures.setdefault(route, []).extend(failures)

    def resources(self) -> set[str]:
        """The names of every model and deployment the account holds (deleted ones that keep
        their id, too)."""
        with self.lock:
            held = [m["name"] for m in self.models.values()]
            return {*held, *(d["name"] for d in self.deployments.values())}

    def __enter__(self) -> FakeFireworks:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    # -- the API -------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if m := _UPLOAD.match(path):
            return self.upload(m[1], m[2], body, query)
        if method == "POST" and (m := _MODELS.match(path)):
            return self.create_model(m[1], body)
        if method == "GET" and (m := _MODEL.match(path)):
            return self.get_model(m[2])
        if method == "DELETE" and (m := _MODEL.match(path)):
            return self.delete_model(m[2])
        if (m := _MODEL_ACTION.match(path)) and m[3] == "getUploadEndpoint" and method == "POST":
            return self.upload_endpoint(m[2], body)
        if (m := _MODEL_ACTION.match(path)) and m[3] == "validateUpload" and method == "GET":
            return self.validate(m[2])
        if method == "POST" and (m := _DEPLOYMENTS.match(path)):
            return self.create_deployment(m[1], query, body)
        if method == "GET" and (m := _DEPLOYMENT.match(path)):
            return self.get_deployment(m[2])
        if method == "DELETE" and (m := _DEPLOYMENT.match(path)):
            return self.delete_deployment(m[2], query.get("hard") == "true")
        return 404, _error(5, f"no route {method} {path}")

    def create_model(self, account: str, body: dict[str, Any]) -> tuple[int, Any]:
        model_id = body.get("modelId")
        model = body.get("model") or {}
        if not model_id or model.get("kind") != "HF_PEFT_ADDON":
            return 400, _error(3, "modelId and model.kind HF_PEFT_ADDON required")
        if model_id in self.models:
            return 409, _error(6, f"model {model_id} already exists")
        name = f"accounts/{account}/models/{model_id}"
        self.models[model_id] = {**model, "name": name, "state": "UPLOADING", "files": {}}
        return 200, self._model(model_id)

    def get_model(self, model_id: str) -> tuple[int, Any]:
        if model_id not in self.models:
            return 404, _error(5, f"model {model_id} not found")
        return 200, self._model(model_id)

    def delete_model(self, model_id: str) -> tuple[int, Any]:
        model = self.models.get(model_id)
        if model is None:
            return 404, _error(5, f"model {model_id} not found")
        using = [d["name"] for d in self.deployments.values() if d["baseModel"] == model["name"]]
        if using:
            return 400, _error(9, f"model {model_id} is used by {', '.join(using)}")
        del self.models[model_id]
        self.uploads = {key: data for key, data in self.uploads.items() if key[0] != model_id}
        return 200, {}

    def _model(self, model_id: str) -> dict[str, Any]:
        return {k: v for k, v in self.models[model_id].items() if k != "files"}

    def upload_endpoint(self, model_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        if model_id not in self.models:
            return 404, _error(5, f"model {model_id} not found")
        sizes = body.get("filenameToSize") or {}
        self.models[model_id]["files"] = dict(sizes)
        urls = {
            name: f"{self.base_url}/upload/{model_id}/{name}?X-Goog-Signature=abc{i}"
            for i, name in enumerate(sizes)
        }
        return 200, {"filenameToSignedUrls": urls}

    def upload(
        self, model_id: str, name: str, data: bytes, query: dict[str, str]
    ) -> tuple[int, Any]:
        expected = self.models.get(model_id, {}).get("files", {}).get(name)
        if expected is None or "X-Goog-Signature" not in query:
            return 403, _error(7, "bad signature")
        if len(data) != expected:
            return 400, _error(3, f"{name}: {len(data)} bytes, declared {expected}")
        self.uploads[(model_id, name)] = data
        return 200, {}

    def validate(self, model_id: str) -> tuple[int, Any]:
        model = self.models.get(model_id)
        if model is None:
            return 404, _error(5, f"model {model_id} not found")
        if self.landing_polls > 0:
            self.landing_polls -= 1
            return 400, _error(9, "FAILED_PRECONDITION: files are still being uploaded")
        missing = [f for f in model["files"] if (model_id, f) not in self.uploads]
        if missing:
            return 400, _error(3, f"missing files: {missing}")
        model["state"] = "READY"
        return 200, {}

    def create_deployment(
        self, account: str, query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        model_name = body.get("baseModel", "")
        model = self.models.get(model_name.rpartition("/")[2])
        if model is None or model["state"] != "READY":
            return 400, _error(9, f"model {model_name} is not READY")
        deployment_id = query.get("deploymentId") or "generated-id"
        if deployment_id in self.deployments:
            return 409, _error(6, f"deployment {deployment_id} already exists")
        name = f"accounts/{account}/deployments/{deployment_id}"
        self.deployments[deployment_id] = {"name": name, "state": "CREATING", **body}
        return 200, self.deployments[deployment_id]

    def get_deployment(self, deployment_id: str) -> tuple[int, Any]:
        deployment = self.deployments.get(deployment_id)
        if deployment is None:
            return 404, _error(5, "deployment not found")
        if deployment["state"] == "DELETING":
            if self.deleting_polls_left.get(deployment_id, 0) <= 0:
                del self.deployments[deployment_id]
                return 404, _error(5, "deployment not found")
            self.deleting_polls_left[deployment_id] -= 1
            return 200, deployment
        if deployment["state"] in ("DELETED", "FAILED"):
            return 200, deployment
        if self.creating_polls > 0:
            self.creating_polls -= 1
        else:
            deployment["state"] = self.final_state
            if self.final_state == "FAILED":
                deployment["status"] = {"code": "INTERNAL", "message": "out of H100s"}
        return 200, deployment

    def delete_deployment(self, deployment_id: str, hard: bool) -> tuple[int, Any]:
        deployment = self.deployments.get(deployment_id)
        if deployment is None:
            return 404, _error(5, "deployment not found")
        if hard:  # on its way out, then gone: its id is free again
            deployment["state"] = "DELETING"
            self.deleting_polls_left[deployment_id] = self.deleting_polls
        else:  # soft: kept as DELETED (it can be undeleted), its id still taken
            deployment["state"] = "DELETED"
        return 200, {}


_ROUTE_NAMES = (
    (_UPLOAD, {"PUT": "upload"}),
    (_MODELS, {"POST": "create_model"}),
    (_MODEL, {"GET": "get_model", "DELETE": "delete_model"}),
    (_DEPLOYMENTS, {"POST": "create_deployment"}),
    (_DEPLOYMENT, {"GET": "get_deployment", "DELETE": "delete_deployment"}),
)


def _route(method: str, path: str) -> str:
    if m := _MODEL_ACTION.match(path):
        return "upload_endpoint" if m[3] == "getUploadEndpoint" else "validate"
    for pattern, by_method in _ROUTE_NAMES:
        if pattern.match(path):
            return by_method.get(method, "unknown")
    return "unknown"


# HTTP status → the google.rpc.Code a gRPC gateway pairs it with
_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 412: 9, 429: 8, 500: 13, 503: 14, 504: 4}


def _error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "details": []}


def _handler(fake: FakeFireworks) -> type[JSONHandler]:
    class Handler(JSONHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def _serve(self) -> None:
            split = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(split.query))
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            route = _route(self.command, split.path)
            with fake.lock:
                fake.requests.append(
                    {"method": self.command, "path": split.path, "route": route,
                     "headers": dict(self.headers), "body": raw}
                )  # fmt: skip
                if route != "upload" and self.headers.get("Authorization") != (
                    f"Bearer {fake.api_key}"
                ):
                    return self._json(401, _error(16, "invalid API key"))
                injected = fake.failures.get(route)
                failure = injected.pop(0) if injected else 0
                if failure == "reset":
                    return self._cut()
                if isinstance(failure, tuple):
                    return self._json(failure[0], _error(failure[1], "injected"))
                if isinstance(failure, int) and failure:
                    headers = {"Retry-After": "0"} if failure == 429 else {}
                    return self._json(failure, _error(_CODES.get(failure, 13), "injected"), headers)
                body: Any = raw if route == "upload" else json.loads(raw or b"{}")
                code, payload = fake.handle(self.command, split.path, query, body)
            if failure == "lost_reply":
                return self._cut()
            self._json(code, payload)

        def _cut(self) -> None:
            """A connection reset: closed with RST, nothing answered."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

    return Handler
