"""A local server that speaks E2B's wire protocols, for tests of the real ``e2b`` SDK.

Two faces on one 127.0.0.1 port (the SDK is pointed at it with ``api_url`` / ``E2B_API_URL``
and ``sandbox_url`` / ``E2B_SANDBOX_URL``):

- the control plane (REST, ``X-API-KEY``): ``POST /v2/sandboxes`` creates a sandbox,
  ``DELETE /sandboxes/{id}`` kills it;
- envd, the API inside a sandbox (``X-Access-Token`` from the create answer, ``E2b-Sandbox-Id``
  names the sandbox): ``POST /files?path=`` (octet-stream upload), ``GET /health``, and the
  Connect RPC ``process.Process/Start`` (server streaming: start, data, end events), served by
  connectrpc's own ASGI application generated for envd's ``process.proto``.

A sandbox is a temporary directory: an absolute sandbox path lies under it, and a command runs
there with ``bash -l -c`` (its exit code and output are real). ``failures`` makes the next
control-plane requests fail in order: ``401``, ``429``, ``500``, ``503`` (whose messages echo
the key), or ``hang`` (answers
after ``hang_s``, past the client's request timeout). ``command_hang_s`` keeps every command
from ending for that long (the SDK's command timeout must end it); ``fail_commands`` makes envd
answer every command with a Connect ``internal`` error.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import uvicorn
from e2b.envd.process import process_pb
from e2b.envd.process.process_connect import Process, ProcessASGIApplication
from protobuf import Oneof
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ENVD_VERSION = "0.6.4"  # new enough for octet-stream uploads and the default user


class FakeE2B:
    """The E2B service for one test: ``url`` for the SDK, ``created``/``killed`` sandbox ids,
    ``requests`` (method, path, headers) in the order they came."""

    def __init__(self, api_key: str, *, hang_s: float = 5.0, command_hang_s: float = 0.0):
        self.api_key, self.hang_s, self.command_hang_s = api_key, hang_s, command_hang_s
        self.failures: list[str] = []
        self.fail_commands = False
        self.created: list[str] = []
        self.killed: list[str] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.templates: list[str] = []
        self._sandboxes: dict[str, tuple[str, Path]] = {}  # id → (access token, root)
        self._root = Path(tempfile.mkdtemp(prefix="fake-e2b-"))
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> FakeE2B:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self._app(), log_level="error", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *_: Any) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)
        shutil.rmtree(self._root, ignore_errors=True)

    @property
    def alive(self) -> list[str]:
        """Sandboxes created and not killed."""
        return [s for s in self.created if s not in self.killed]

    def _app(self) -> Any:
        rest = Starlette(
            routes=[
                Route("/v2/sandboxes", self._create, methods=["POST"]),
                Route("/sandboxes/{sandbox_id}", self._kill, methods=["DELETE"]),
                Route("/files", self._write_file, methods=["POST"]),
                Route("/health", lambda _: Response(status_code=204), methods=["GET"]),
            ]
        )
        process = ProcessASGIApplication(_Process(self))

        async def app(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                self.requests.append((scope["method"], scope["path"], headers))
            if scope["type"] == "http" and scope["path"].startswith("/process.Process/"):
                await process(scope, receive, send)
            else:
                await rest(scope, receive, send)

        return app

    # -- the control plane ------------------------------------------------------------------------

    async def _refusal(self, request: Request) -> Response | None:
        if request.headers.get("x-api-key") != self.api_key:
            return JSONResponse({"code": 401, "message": "Invalid API key"}, status_code=401)
        if not self.failures:
            return None
        failure = self.failures.pop(0)
        if failure == "hang":
            await asyncio.sleep(self.hang_s)
            failure = "500"
        code = int(failure)
        # A careless service may echo the key it was sent: the client must not pass it on.
        echoed = f"Internal error serving key {request.headers.get('x-api-key')}"
        message = {401: "Invalid API key", 429: "Rate limit exceeded"}.get(code, echoed)
        return JSONResponse({"code": code, "message": message}, status_code=code)

    async def _create(self, request: Request) -> Response:
        if (refused := await self._refusal(request)) is not None:
            return refused
        body = await request.json()
        sandbox_id, token = f"sbx{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
        root = self._root / sandbox_id
        (root / "home" / "user").mkdir(parents=True)
        self._sandboxes[sandbox_id] = (token, root)
        self.created.append(sandbox_id)
        self.templates.append(body["templateID"])
        answer = {
            "templateID": body["templateID"],
            "sandboxID": sandbox_id,
            "clientID": "fake",
            "envdVersion": ENVD_VERSION,
            "envdAccessToken": token,
        }
        return JSONResponse(answer, status_code=201)

    async def _kill(self, request: Request) -> Response:
        if request.headers.get("x-api-key") != self.api_key:
            return JSONResponse({"code": 401, "message": "Invalid API key"}, status_code=401)
        sandbox_id = request.path_params["sandbox_id"]
        if sandbox_id not in self._sandboxes or sandbox_id in self.killed:
            return JSONResponse({"code": 404, "message": "not found"}, status_code=404)
        self.killed.append(sandbox_id)
        return Response(status_code=204)

    # -- envd ---------------------------------------------------------------------------------------

    def sandbox_root(self, headers: Any) -> Path | None:
        """The directory of the live sandbox the envd request names and is authorised for."""
        found = self._sandboxes.get(headers.get("e2b-sandbox-id", ""))
        if found is None or headers.get("e2b-sandbox-id") in self.killed:
            return None
        token, root = found
        return root if headers.get("x-access-token") == token else None

    async def _write_file(self, request: Request) -> Response:
        root = self.sandbox_root(request.headers)
        if root is None:
            return JSONResponse({"code": 401, "message": "unauthorized"}, status_code=401)
        path = request.query_params["path"]
        target = root / path.lstrip("/")
        if root not in target.resolve().parents:
            return JSONResponse({"code": 400, "message": "bad path"}, status_code=400)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(await request.body())
        return JSONResponse([{"name": target.name, "type": "file", "path": path}])


class _Process(Process):
    """envd's process service: ``Start`` runs the command in the sandbox's directory."""

    def __init__(self, server: FakeE2B):
        self.server = server

    async def start(self, request: Any, ctx: Any) -> Any:
        from connectrpc.code import Code
        from connectrpc.errors import ConnectError

        root = self.server.sandbox_root(ctx.request_headers)
        if root is None:
            raise ConnectError(Code.UNAUTHENTICATED, "unauthorized")
        if self.server.fail_commands:
            raise ConnectError(Code.INTERNAL, "envd failed to start the process")
        config = request.process
        cwd = root / (config.cwd or "/home/user").lstrip("/")
        child = await asyncio.create_subprocess_exec(
            config.cmd,
            *config.args,
            cwd=cwd,
            env={"PATH": "/usr/bin:/bin", "HOME": str(root / "home" / "user"), **config.envs},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        yield _event("start", process_pb.ProcessEvent.StartEvent(pid=child.pid))
        try:
            if self.server.command_hang_s:
                await asyncio.sleep(self.server.command_hang_s)
            stdout, stderr = await child.communicate()
        finally:
            if child.returncode is None:
                child.kill()
        for stream, data in (("stdout", stdout), ("stderr", stderr)):
            if data:
                output = process_pb.ProcessEvent.DataEvent(output=Oneof(stream, data))
                yield _event("data", output)
        code = child.returncode
        end = process_pb.ProcessEvent.EndEvent(
            exit_code=code, exited=True, status=f"exit status {code}"
        )
        yield _event("end", end)


def _event(kind: str, value: Any) -> Any:
    return process_pb.StartResponse(event=process_pb.ProcessEvent(event=Oneof(kind, value)))
