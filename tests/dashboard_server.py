"""The real dashboard service under uvicorn on 127.0.0.1, for the tests of the service, its
client, its web UI and the wiring.

On SQLite (a file per service) and on PostgreSQL (a fresh schema per service in the database at
``EVSYS_TEST_POSTGRES_URL``; skipped when it is unset, a failure when ``EVSYS_REQUIRE_POSTGRES=1``,
as ``scripts/test`` sets it). Tests that share one service keep apart by project:
:meth:`DashboardService.new_project` makes a project and its key.

``tests/conftest.py`` loads this module as a plugin, so every test module has its fixtures:

- ``dashboard``: one service per test module and database (default limits);
- ``fresh_dashboard``: one service per test, on an empty database.

or build one with :func:`running_dashboard` (``with running_dashboard("sqlite", tmp_path) as
service: ...``). Needs the dashboard extra; a module that uses it should start with
``pytest.importorskip("fastapi")``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.dashboard_process import postgres_schema

if TYPE_CHECKING:
    import httpx

DATABASES = ("sqlite", "postgresql")
POSTGRES_URL_ENV = "EVSYS_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "EVSYS_REQUIRE_POSTGRES"
API_PREFIX = "/api/dashboard/api"


@dataclass(frozen=True)
class ProjectKey:
    """A project and a key of it."""

    name: str
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class DashboardService:
    """A running service: ``url`` (``http://127.0.0.1:<port>``), ``api`` (``url`` + the API
    prefix), its database URL, its file store and the app (``app.state.sessions`` opens the
    database)."""

    url: str
    db_url: str
    store_dir: Path
    app: Any
    database: str  # "sqlite" | "postgresql"

    @property
    def api(self) -> str:
        return self.url + API_PREFIX

    def new_project(self, name: str | None = None) -> ProjectKey:
        """A new project (or an existing one by ``name``) and a fresh key of it."""
        from evsys.dashboard.auth import create_key

        with self.app.state.sessions() as session:
            key, _row, project = create_key(session, name or f"p-{uuid.uuid4().hex[:12]}")
            session.commit()
            return ProjectKey(name=project.name, id=project.id, key=key)

    def revoke(self, key: str) -> None:
        from evsys.dashboard.auth import PREFIX_LENGTH, revoke_key

        with self.app.state.sessions() as session:
            revoke_key(session, key[:PREFIX_LENGTH])
            session.commit()


def postgres_url() -> str:
    """The test PostgreSQL server's URL; skips (or fails, when required) without one."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return url
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(
            f"{REQUIRE_POSTGRES_ENV}=1 but {POSTGRES_URL_ENV} is unset: "
            "bash scripts/postgres start; export "
            f"{POSTGRES_URL_ENV}=$(bash scripts/postgres url)"
        )
    pytest.skip(f"PostgreSQL tests need {POSTGRES_URL_ENV} (bash scripts/postgres start)")


@contextlib.contextmanager
def fresh_database(database: str, directory: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file in ``directory``, or a new PostgreSQL
    schema (dropped afterwards)."""
    if database == "sqlite":
        yield f"sqlite:///{directory / 'dashboard.db'}"
        return
    with postgres_schema(postgres_url(), "test") as url:
        yield url


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a free port of 127.0.0.1; yields its URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", http="h11", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the dashboard did not start under uvicorn")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextlib.contextmanager
def running_dashboard(database: str, directory: Path, **limits: int) -> Iterator[DashboardService]:
    """A fresh service on ``database`` ("sqlite" or "postgresql") with its files in
    ``directory``; ``limits`` are ``create_app``'s ``max_body`` / ``max_upload``."""
    from evsys.dashboard.app import create_app

    with fresh_database(database, directory) as db_url:
        store = directory / "store"
        app = create_app(db_url, store, **limits)
        try:
            with serve(app) as url:
                yield DashboardService(
                    url=url, db_url=db_url, store_dir=store, app=app, database=database
                )
        finally:
            app.state.engine.dispose()


@pytest.fixture(scope="module", params=DATABASES)
def dashboard(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardService]:
    """One service per test module and database; tests keep apart by project."""
    with running_dashboard(request.param, tmp_path_factory.mktemp("dashboard")) as service:
        yield service


SMALL_MAX_BODY = 256 * 1024
SMALL_MAX_UPLOAD = 1024 * 1024


@pytest.fixture(scope="module", params=DATABASES)
def small_limits_dashboard(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardService]:
    """As ``dashboard``, with request limits small enough for a test to exceed them."""
    directory = tmp_path_factory.mktemp("dashboard")
    limits = {"max_body": SMALL_MAX_BODY, "max_upload": SMALL_MAX_UPLOAD}
    with running_dashboard(request.param, directory, **limits) as service:
        yield service


@pytest.fixture(params=DATABASES)
def fresh_dashboard(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DashboardService]:
    """A service of its own for one test, on an empty database."""
    with running_dashboard(request.param, tmp_path) as service:
        yield service


class ProjectClient:
    """One project's view of a service over HTTP (httpx): ``send`` writes, ``get`` reads,
    ``upload`` files; ``send`` and ``get`` assert a 200."""

    def __init__(self, service: DashboardService, project: ProjectKey) -> None:
        import httpx

        self.project = project
        self.http = httpx.Client(base_url=service.api, headers=project.headers, timeout=60)

    def post_writes(self, *writes: dict[str, Any]) -> httpx.Response:
        # json.dumps writes NaN and Infinity, as Python clients do; httpx's json= refuses them.
        body = json.dumps({"writes": list(writes)})
        return self.http.post(
            "/sdk/writes", content=body, headers={"Content-Type": "application/json"}
        )

    def send(self, *writes: dict[str, Any]) -> dict[str, int]:
        response = self.post_writes(*writes)
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def upload(self, kind: str, name: str, filename: str, content: bytes) -> httpx.Response:
        return self.http.post(f"/{kind}", data={"name": name}, files={"file": (filename, content)})


def write(op: str, data: dict[str, Any], write_id: str | None = None) -> dict[str, Any]:
    """One write of ``op`` (a fresh id unless ``write_id``), timed now."""
    return {"id": write_id or uuid.uuid4().hex, "op": op, "data": data, "time": time.time()}
