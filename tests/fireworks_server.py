"""A Fireworks-protocol control plane on 127.0.0.1 for tests: the calls the deployer makes.

It speaks the REST API of Fireworks' upload guide and deployment reference (JSON in and out,
Bearer auth, gRPC-style error bodies): create a model, hand out signed upload URLs (served here
too, checking each file's size and that no API key is sent to them), validate the upload (with
FAILED_PRECONDITION while files are "still landing"), create a deployment and report its state,
CREATING then READY. Failures are injected per route, in order.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from http.server import ThreadingHTTPServer
from typing import Any

from vendor_servers import JSONHandler

_MODELS = re.compile(r"^/v1/accounts/([^/]+)/models$")
_MODEL_ACTION = re.compile(
    r"^/v1/accounts/([^/]+)/models/([^/:]+):(getUploadEndpoint|validateUpload)$"
)
_DEPLOYMENTS = re.compile(r"^/v1/accounts/([^/]+)/deployments$")
_DEPLOYMENT = re.compile(r"^/v1/accounts/([^/]+)/deployments/([^/]+)$")
_UPLOAD = re.compile(r"^/upload/([^/]+)/([^/?]+)$")


class FakeFireworks:
    """``failures``: route name → HTTP codes its next calls fail with, in order (``create_model``,
    ``upload_endpoint``, ``upload``, ``validate``, ``create_deployment``, ``get_deployment``);
    ``landing_polls``: validateUpload answers FAILED_PRECONDITION this many times first;
    ``creating_polls``: the deployment reports CREATING this many times before ``final_state``."""

    def __init__(
        self,
        *,
        api_key: str = "fw-test-key",
        account: str = "acme",
        failures: dict[str, list[int]] | None = None,
        landing_polls: int = 1,
        creating_polls: int = 2,
        final_state: str = "READY",
    ):
        self.api_key, self.account = api_key, account
        self.failures = {k: list(v) for k, v in (failures or {}).items()}
        self.landing_polls, self.creating_polls = landing_polls, creating_polls
        self.final_state = final_state
        self.requests: list[dict[str, Any]] = []
        self.models: dict[str, dict[str, Any]] = {}
        self.uploads: dict[tuple[str, str], bytes] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def routes(self) -> list[str]:
        return [r["route"] for r in self.requests]

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
        if (m := _MODEL_ACTION.match(path)) and m[3] == "getUploadEndpoint" and method == "POST":
            return self.upload_endpoint(m[2], body)
        if (m := _MODEL_ACTION.match(path)) and m[3] == "validateUpload" and method == "GET":
            return self.validate(m[2])
        if method == "POST" and (m := _DEPLOYMENTS.match(path)):
            return self.create_deployment(m[1], query, body)
        if method == "GET" and (m := _DEPLOYMENT.match(path)):
            return self.get_deployment(m[2])
        return 404, _error(5, f"no route {method} {path}")

    def create_model(self, account: str, body: dict[str, Any]) -> tuple[int, Any]:
        model_id = body.get("modelId")
        model = body.get("model") or {}
        if not model_id or model.get("kind") != "HF_PEFT_ADDON":
            return 400, _error(3, "modelId and model.kind HF_PEFT_ADDON required")
        if model_id in self.models:
            return 409, _error(6, f"model {model_id} already exists")
        name = f"accounts/{account}/models/{model_id}"
        self.models[model_id] = {"name": name, "state": "UPLOADING", **model, "files": {}}
        return 200, {"name": name, "state": "UPLOADING", "kind": model["kind"]}

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
        name = f"accounts/{account}/deployments/{deployment_id}"
        self.deployments[deployment_id] = {"name": name, "state": "CREATING", **body}
        return 200, self.deployments[deployment_id]

    def get_deployment(self, deployment_id: str) -> tuple[int, Any]:
        deployment = self.deployments.get(deployment_id)
        if deployment is None:
            return 404, _error(5, "deployment not found")
        if self.creating_polls > 0:
            self.creating_polls -= 1
        else:
            deployment["state"] = self.final_state
            if self.final_state == "FAILED":
                deployment["status"] = {"code": "INTERNAL", "message": "out of H100s"}
        return 200, deployment


_ROUTE_NAMES = (
    (_UPLOAD, "upload"),
    (_MODELS, "create_model"),
    (_DEPLOYMENTS, "create_deployment"),
    (_DEPLOYMENT, "get_deployment"),
)


def _route(path: str) -> str:
    if m := _MODEL_ACTION.match(path):
        return "upload_endpoint" if m[3] == "getUploadEndpoint" else "validate"
    return next((name for pattern, name in _ROUTE_NAMES if pattern.match(path)), "unknown")


def _error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def _handler(fake: FakeFireworks) -> type[JSONHandler]:
    class Handler(JSONHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def _serve(self) -> None:
            split = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(split.query))
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            route = _route(split.path)
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
                if injected:
                    code = injected.pop(0)
                    headers = {"Retry-After": "0"} if code == 429 else {}
                    return self._json(code, _error(14, "injected failure"), headers)
                body: Any = raw if route == "upload" else json.loads(raw or b"{}")
                code, payload = fake.handle(self.command, split.path, query, body)
            self._json(code, payload)

    return Handler
