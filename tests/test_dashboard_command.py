"""``evsys dashboard`` (create-key, serve, revoke-key, keys; bad input), the schema's
migrations on SQLite and PostgreSQL, and the light imports of evsys without the service."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the dashboard extra: pip install 'evsys[dashboard]'")
import httpx  # noqa: E402 - after the extra's check
from dashboard_server import DATABASES, fresh_database  # noqa: E402


@pytest.mark.parametrize("database", DATABASES)
def test_the_migrations_build_exactly_the_models(database: str, tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from evsys.dashboard.db import make_engine, upgrade
    from evsys.dashboard.models import Base

    with fresh_database(database, tmp_path) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            upgrade(engine)  # at head already: nothing to do
            with engine.connect() as connection:
                assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        finally:
            engine.dispose()


@pytest.mark.parametrize("database", DATABASES)
def test_step_rows_from_before_the_write_times_count_as_oldest(
    database: str, tmp_path: Path
) -> None:
    """A database of revision 0001 upgraded in place: its step rows have no write time, so
    any timed write replaces them; after that only a newer one does."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from evsys.dashboard.db import MIGRATIONS, make_engine, sessions, upgrade
    from evsys.dashboard.writes import apply_batch

    def write(when: float, value: float) -> dict:
        steps = [{"step": 1, "metrics": {"loss": value}}]
        return {"id": f"w{when}", "op": "run.steps", "data": {"run_id": "r", "steps": steps}} | {
            "time": when
        }

    with fresh_database(database, tmp_path) as url:
        engine = make_engine(url)
        try:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "0001")
                connection.execute(
                    sa.text("INSERT INTO projects VALUES ('p', 'p', :now)"), {"now": "2026-01-01"}
                )
                connection.execute(
                    sa.text(
                        "INSERT INTO step_metrics (project_id, run_id, step, name, value)"
                        " VALUES ('p', 'r', 1, 'loss', 5.0)"
                    )
                )
            upgrade(engine)
            held = sa.text("SELECT value, written_at FROM step_metrics")
            with sessions(engine)() as session:
                apply_batch(session, "p", [write(1.0, 4.0)])
                assert session.execute(held).all() == [(4.0, 1.0)]
                for when, value in ((2.0, 2.0), (0.5, 3.0)):
                    apply_batch(session, "p", [write(when, value)])
                session.commit()
                assert session.execute(held).all() == [(2.0, 2.0)]
        finally:
            engine.dispose()


def test_postgresql_tests_skip_without_a_server_unless_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dashboard_server import postgres_url

    monkeypatch.delenv("EVSYS_TEST_POSTGRES_URL", raising=False)
    monkeypatch.delenv("EVSYS_REQUIRE_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="EVSYS_TEST_POSTGRES_URL"):
        postgres_url()
    monkeypatch.setenv("EVSYS_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="scripts/postgres start"):
        postgres_url()
    monkeypatch.setenv("EVSYS_TEST_POSTGRES_URL", "postgresql+psycopg://u:p@127.0.0.1:1/db")
    assert postgres_url() == "postgresql+psycopg://u:p@127.0.0.1:1/db"


@dataclass
class Done:
    code: int
    out: str
    err: str


@pytest.fixture
def dashboard_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Done]:
    """``evsys dashboard ARGS`` in this process, in a scratch working directory."""
    from evsys.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Done:
        with pytest.raises(SystemExit) as exit_info:
            main(["dashboard", *args])
        captured = capsys.readouterr()
        return Done(exit_info.value.code, captured.out, captured.err)

    return run


def test_create_key_then_serve_then_revoke(
    tmp_path: Path, dashboard_cli: Callable[..., Done]
) -> None:
    created = dashboard_cli("create-key", "--project", "team")
    assert created.code == 0, created.err
    key = created.out.strip()
    assert key.startswith("evsys_") and "shown once" in created.err
    assert (tmp_path / ".evsys" / "dashboard.db").is_file()  # the default database

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "evsys.cli", "dashboard", "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        api = f"http://127.0.0.1:{port}/api/dashboard/api"
        wait_for(f"{api}/health", server)
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{api}/sdk/whoami", headers=headers).json()["project_name"] == "team"
        prefix = key[:14]
        revoked = dashboard_cli("revoke-key", prefix)
        assert revoked.code == 0 and prefix in revoked.out
        assert httpx.get(f"{api}/sdk/whoami", headers=headers).status_code == 401
        assert "revoked" in dashboard_cli("keys").out
    finally:
        server.terminate()
        server.communicate(timeout=30)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["keys", "--db", "mysql://u@host/db"], "runs on SQLite"),
        (["keys", "--db", "postgresql://u:secret@127.0.0.1:1/db"], "cannot open the database"),
        (["serve", "--db", "postgresql://u:secret@127.0.0.1:1/db"], "cannot open the database"),
        (["create-key", "--project", "../etc"], "project name '../etc'"),
        (["serve", "--store", "/proc/no/such"], "--store /proc/no/such: cannot create it"),
        (["revoke-key", "evsys_nothing"], "no key has the prefix 'evsys_nothing'"),
    ],
)
def test_bad_input_to_the_command_is_one_line_and_exit_2(
    args: list[str], named: str, dashboard_cli: Callable[..., Done]
) -> None:
    done = dashboard_cli(*args)
    assert done.code == 2
    assert named in done.err
    assert len(done.err.strip().splitlines()) == 1
    assert "secret" not in done.err  # the password is not echoed


def test_a_database_of_a_newer_evsys_is_refused_in_one_line(
    tmp_path: Path, dashboard_cli: Callable[..., Done]
) -> None:
    import contextlib
    import sqlite3

    assert dashboard_cli("create-key", "--project", "p").code == 0
    database = tmp_path / ".evsys" / "dashboard.db"
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    done = dashboard_cli("keys")
    assert done.code == 2
    assert "cannot open the database" in done.err and "9999_from_the_future" in done.err


def test_without_the_extra_the_command_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from evsys.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "keys"])
    assert exit_info.value.code == 2
    assert "pip install 'evsys[dashboard]'" in capsys.readouterr().err


def test_evsys_and_its_command_line_stay_without_the_service_stack(tmp_path: Path) -> None:
    code = (
        "import sys, evsys\n"
        "from evsys.cli import main\n"
        "try:\n    main(['dashboard', '--help'])\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'alembic', 'jinja2', 'starlette') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- helpers --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"evsys dashboard serve exited: {server.communicate()[1]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within 60 s")
