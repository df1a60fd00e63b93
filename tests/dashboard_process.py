"""The dashboard service as a real process (uvicorn on 127.0.0.1), to be killed and restarted.

``ServiceProcess(db_url, store_dir)`` starts ``create_app`` under uvicorn in a child process and
waits for ``/health``; ``kill()`` is a SIGKILL (no shutdown, no flush: a crash), and ``start()``
again serves the same database on the same port. ``new_key(db_url)`` makes a project and its
API key directly in the database (``dashboard_server.fresh_database`` makes the database, with
``postgres_schema`` on PostgreSQL). The in-process service of ``dashboard_server`` serves every
other test; only a crash needs a process. No pytest here: ``bench/dashboard.py`` uses it too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVE = """
import sys, uvicorn
from evsys.dashboard.app import create_app
uvicorn.run(create_app(sys.argv[1], sys.argv[2]), host="127.0.0.1", port=int(sys.argv[3]),
            log_level="warning")
"""


@contextlib.contextmanager
def postgres_schema(url: str, prefix: str) -> Iterator[str]:
    """The URL of a new, empty schema ``<prefix>_<random>`` of the PostgreSQL database at
    ``url``, dropped afterwards with everything in it."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    base = make_url(url)
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def new_key(db_url: str, project: str | None = None) -> str:
    """A fresh project (its own, so tests sharing a PostgreSQL database never see each other's
    objects) and a key for it."""
    from evsys.dashboard.auth import create_key
    from evsys.dashboard.db import make_engine, sessions, upgrade

    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with sessions(engine)() as session:
            key, _, _ = create_key(session, project or f"p-{uuid.uuid4().hex[:12]}")
            session.commit()
    finally:
        engine.dispose()
    return key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    def __init__(self, db_url: str, store_dir: Path, port: int | None = None):
        self.db_url, self.store_dir = db_url, store_dir
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-c", SERVE, self.db_url, str(self.store_dir), str(self.port)]
        self.process = subprocess.Popen(argv, env=env, cwd=self.store_dir.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the dashboard exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/dashboard/api/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the dashboard did not answer within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: the service dies as in a crash, mid-request if one is in flight."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
