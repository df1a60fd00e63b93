"""``evsys dashboard serve|create-key|revoke-key|keys``: run the dashboard service, manage its keys.

  evsys dashboard serve [--db URL] [--host 127.0.0.1] [--port 8000] [--store DIR]
  evsys dashboard create-key --project NAME [--db URL]   # prints the key once
  evsys dashboard revoke-key PREFIX [--db URL]
  evsys dashboard keys [--db URL]

``--db`` is a SQLite file path (default: .evsys/dashboard.db in this directory), a
sqlite:///path URL, or postgresql://user:password@host:port/database. The database is brought to
the newest schema before anything else. Needs ``pip install 'evsys[dashboard]'``.
Exit codes: 0 done, 2 bad input (the extra missing, a bad --db, an unknown key prefix).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evsys.errors import EvsysError

if TYPE_CHECKING:
    from sqlalchemy import Engine

EXIT_OK, EXIT_BAD_INPUT = 0, 2
DEFAULT_DB = ".evsys/dashboard.db"
DEFAULT_STORE = ".evsys/dashboard-files"
EXTRA_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "multipart")


class DashboardCommandError(EvsysError, ValueError):
    """Bad input to ``evsys dashboard``: one line, exit 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    serve = actions.add_parser("serve", help="run the dashboard (API and web UI) under uvicorn")
    _db_argument(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (8000)")
    serve.add_argument(
        "--store", default=DEFAULT_STORE, help=f"directory of uploaded files ({DEFAULT_STORE})"
    )
    serve.add_argument(
        "--max-body-mb", type=int, default=32, help="largest request body in MiB (32)"
    )
    serve.add_argument("--max-upload-mb", type=int, default=512, help="largest upload in MiB (512)")

    create = actions.add_parser("create-key", help="a new API key for a project (shown once)")
    create.add_argument("--project", required=True, help="the project (created if needed)")
    _db_argument(create)

    revoke = actions.add_parser("revoke-key", help="revoke a key by the prefix create-key showed")
    revoke.add_argument("prefix", help="the key's prefix (evsys_XXXXXXXX)")
    _db_argument(revoke)

    keys = actions.add_parser("keys", help="list the keys (prefixes, projects, revoked or not)")
    _db_argument(keys)


def _db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", default=DEFAULT_DB, help=f"SQLite path or database URL ({DEFAULT_DB})"
    )


def execute(args: argparse.Namespace) -> int:
    try:
        _require_extra()
        return {
            "serve": _serve,
            "create-key": _create_key,
            "revoke-key": _revoke_key,
            "keys": _keys,
        }[args.action](args)
    except DashboardCommandError as error:
        print(f"evsys dashboard {args.action}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _require_extra() -> None:
    import importlib.util

    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise DashboardCommandError(
            f"the dashboard needs {', '.join(missing)}: pip install 'evsys[dashboard]'"
        )


def _open(db: str) -> Engine:
    """The engine of ``db``, upgraded to the newest schema; bad URLs and unreachable databases
    are one line."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from evsys.dashboard.db import DatabaseURLError, make_engine, normalize_url, upgrade

    try:
        url = normalize_url(db)
        shown = url.render_as_string(hide_password=True)
        engine = make_engine(url)
    except DatabaseURLError as error:
        raise DashboardCommandError(str(error)) from None
    try:
        upgrade(engine)
    except (SQLAlchemyError, CommandError, OSError) as error:
        # CommandError: the database is at a revision this evsys does not know (a newer one).
        engine.dispose()
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise DashboardCommandError(f"cannot open the database {shown}: {reason}") from None
    return engine


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from evsys.dashboard.app import create_app

    _open(args.db).dispose()  # a bad --db is one line here, not a traceback from the app
    if args.max_body_mb < 1 or args.max_upload_mb < 1:
        raise DashboardCommandError("--max-body-mb and --max-upload-mb must be at least 1")
    try:
        Path(args.store).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DashboardCommandError(f"--store {args.store}: cannot create it: {error}") from None
    app = create_app(
        args.db,
        Path(args.store),
        max_body=args.max_body_mb * 1024 * 1024,
        max_upload=args.max_upload_mb * 1024 * 1024,
    )
    print(
        f"evsys dashboard: http://{args.host}:{args.port}/ (API under /api/dashboard/api)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return EXIT_OK


def _create_key(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    from evsys.dashboard.auth import KeyActionError, create_key

    engine = _open(args.db)
    try:
        with Session(engine, expire_on_commit=False) as session:
            key, row, project = create_key(session, args.project)
            session.commit()
    except KeyActionError as error:
        raise DashboardCommandError(str(error)) from None
    finally:
        engine.dispose()
    print(
        f"a new key for project {project.name!r} (project id {project.id}), prefix {row.prefix}.\n"
        "It is shown once: store it now (export EVSYS_API_KEY=...).",
        file=sys.stderr,
    )
    print(key)
    return EXIT_OK


def _revoke_key(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    from evsys.dashboard.auth import KeyActionError, revoke_key

    engine = _open(args.db)
    try:
        with Session(engine) as session:
            row = revoke_key(session, args.prefix)
            session.commit()
            print(f"revoked {row.prefix}")
    except KeyActionError as error:
        raise DashboardCommandError(str(error)) from None
    finally:
        engine.dispose()
    return EXIT_OK


def _keys(args: argparse.Namespace) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from evsys.dashboard.models import ApiKey, Project, json_value

    engine = _open(args.db)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(ApiKey, Project.name)
                .join(Project, Project.id == ApiKey.project_id)
                .order_by(Project.name, ApiKey.created_at)
            ).all()
            for key, project in rows:
                state = f"revoked {json_value(key.revoked_at)}" if key.revoked_at else "active"
                print(f"{key.prefix}  {project}  created {json_value(key.created_at)}  {state}")
    finally:
        engine.dispose()
    return EXIT_OK
