"""The dashboard's database: URL normalisation, the engine, and the upgrade to the newest schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_DB = ".evsys/dashboard.db"


class DatabaseURLError(ValueError):
    """A database URL that cannot be used: its message names the URL (without its password)
    and says what is wrong."""


def normalize_url(db: str) -> URL:
    """``db`` as a SQLAlchemy URL. A plain path is a SQLite file; ``postgresql://`` and
    ``postgres://`` use psycopg 3 (the driver the dashboard extra installs)."""
    if "://" not in db:
        return URL.create("sqlite", database=str(Path(db).expanduser()))
    try:
        url = make_url(db)
    except ArgumentError as error:
        raise DatabaseURLError(f"--db {db!r} is not a database URL: {error}") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseURLError(
            f"--db {url.render_as_string(hide_password=True)!r}: the dashboard runs on SQLite "
            "(a file path or sqlite:///path) or PostgreSQL (postgresql://user:pass@host/db)"
        )
    return url


def make_engine(db: str | URL) -> Engine:
    url = db if isinstance(db, URL) else normalize_url(db)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            try:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DatabaseURLError(
                    f"--db {url!s}: cannot create its directory: {error}"
                ) from None
        try:
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        except NoSuchModuleError as error:
            raise DatabaseURLError(f"--db {url!s}: {error}") from None
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except (NoSuchModuleError, ModuleNotFoundError) as error:
        raise DatabaseURLError(
            f"--db {url.render_as_string(hide_password=True)}: {error}"
        ) from None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the UI read while a batch is written; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema (Alembic ``upgrade head``, no alembic.ini)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
