"""``create_app``: the dashboard service as one FastAPI app (API, file store, and the web UI
when ``evsys.dashboard.ui`` is present)."""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from evsys.dashboard import api, files
from evsys.dashboard.db import make_engine, sessions, upgrade
from evsys.dashboard.limits import BodyLimit
from evsys.tracking.wire import API_PREFIX

MiB = 1024 * 1024
MAX_BODY = 32 * MiB
MAX_UPLOAD = 512 * MiB


def create_app(
    db_url: str,
    store_dir: str | Path,
    *,
    max_body: int = MAX_BODY,
    max_upload: int = MAX_UPLOAD,
) -> FastAPI:
    """The dashboard on the database at ``db_url`` (upgraded to the newest schema now) with
    uploaded datasets and benchmarks under ``store_dir``. Request bodies over ``max_body``
    bytes (uploads: ``max_upload``) are answered 413."""
    from evsys import __version__

    engine = make_engine(db_url)
    upgrade(engine)
    store = Path(store_dir).resolve()
    store.mkdir(parents=True, exist_ok=True)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="evsys dashboard",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN; the dashboard ships everything it serves
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.sessions = sessions(engine)
    app.state.store_dir = store
    # SQLite takes one writer at a time; serialising batches here avoids "database is locked"
    # under concurrent arms. PostgreSQL's row locks and ON CONFLICT need no help.
    app.state.write_lock = (
        threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    )
    app.include_router(api.router, prefix=API_PREFIX)
    app.include_router(files.router, prefix=API_PREFIX)
    _add_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        max_body=max_body,
        max_upload=max_upload,
        upload_paths={f"{API_PREFIX}/{kind}" for kind in files.KINDS},
    )
    install_ui(app)
    return app


def install_ui(app: FastAPI) -> None:
    """Mount the web UI's routes when the package ships it (``evsys/dashboard/ui/routes.py``
    with ``install(app, sessionmaker)``)."""
    if importlib.util.find_spec("evsys.dashboard.ui") is None:
        return
    if importlib.util.find_spec("evsys.dashboard.ui.routes") is None:
        return
    from evsys.dashboard.ui import routes

    routes.install(app, app.state.sessions)


def _add_error_handlers(app: FastAPI) -> None:
    """Bad input answers one 4xx ``{"detail": "<where>: <what>"}``, never a 500."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg')}"}, status_code=422)

    @app.exception_handler(DataError)
    @app.exception_handler(IntegrityError)
    async def refused(_request: Request, error: Exception) -> JSONResponse:
        reason = str(getattr(error, "orig", error)).splitlines()[0]
        return JSONResponse({"detail": f"the database refused a value: {reason}"}, 422)

    @app.exception_handler(OperationalError)
    async def unavailable(request: Request, error: OperationalError) -> JSONResponse:
        # SQLSTATE class 54 (program limit exceeded: a value too large to index) is the
        # request's fault; anything else operational is the database's, worth a retry.
        if str(getattr(error.orig, "sqlstate", "") or "").startswith("54"):
            return await refused(request, error)
        return JSONResponse({"detail": "the database is unavailable; retry later"}, 503)
