"""The web UI's routes: log in with an API key, then browse that key's project.

``install(app, sessionmaker)`` mounts them (and ``/static``) into the service's app. Pages are
rendered on the server by Jinja2 with autoescape on for every template, and served with a
Content-Security-Policy that runs only this package's own script: user text (names,
hypotheses, predictions, configs, tags) shows as text and never runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from evsys.dashboard.auth import hash_key
from evsys.dashboard.models import ApiKey, Project
from evsys.dashboard.ui import reads, views
from evsys.dashboard.ui.arm_query import BadQuery, parse_query
from evsys.dashboard.ui.experiment_view import arms_page
from evsys.dashboard.ui.explore_routes import Explore
from evsys.dashboard.ui.live_version import experiment_version
from evsys.dashboard.ui.sessions import (
    COOKIE,
    MAX_AGE_S,
    SessionSigner,
    load_or_create_secret,
)

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
KINDS = {"datasets": "Datasets", "benchmarks": "Benchmarks"}


class LoginRequired(Exception):
    """No valid session: a page answers with a redirect to /login, a fragment with 401."""

    def __init__(self, next_url: str, fragment: bool = False):
        self.next_url, self.fragment = next_url, fragment


def install(
    app: FastAPI, sessionmaker: sessionmaker[Session], *, secret: bytes | None = None
) -> None:
    """Mount the UI into ``app``. The session secret comes from ``secret``, else from the
    service's file store (``app.state.store_dir``), else is made for this process only."""
    if secret is None:
        store_dir = getattr(app.state, "store_dir", None)
        secret = load_or_create_secret(store_dir) if store_dir else os.urandom(32)
    ui = _UI(sessionmaker, SessionSigner(secret))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(ui.router())
    app.include_router(Explore(sessionmaker, ui.project, SECURITY_HEADERS).router())
    app.add_exception_handler(LoginRequired, ui.login_required)


class _UI:
    def __init__(self, sessionmaker: sessionmaker[Session], signer: SessionSigner):
        self.sessionmaker, self.signer = sessionmaker, signer
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True
        )
        self.env.filters.update(
            num=views.number, when=views.when, pretty=views.pretty, filesize=views.filesize
        )
        self.env.tests["completed"] = views.completed  # `run is completed`: may be called best
        self.env.globals["static_url"] = _static_url()

    # ---- plumbing --------------------------------------------------------------------------

    def render(self, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=code, headers=SECURITY_HEADERS)

    def project(self, request: Request, db: Session, fragment: bool = False) -> Project:
        """The session's project; raises LoginRequired when the cookie is missing, forged,
        expired, or its key was revoked since."""
        session = self.signer.read(request.cookies.get(COOKIE))
        key = None
        if session is not None and session.key_id.isdigit():
            key = db.get(ApiKey, int(session.key_id))
        if key is None or key.revoked_at is not None or key.project_id != session.project_id:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(target, fragment)
        project = db.get(Project, key.project_id)
        if project is None:
            raise LoginRequired("/", fragment)
        return project

    def not_found(self, project: Project, message: str) -> HTMLResponse:
        return self.render("error.html", 404, project=project, status="Not found", message=message)

    async def login_required(self, request: Request, exc: Exception) -> Response:
        if not isinstance(exc, LoginRequired):  # registered for LoginRequired only
            raise exc
        if exc.fragment:
            return Response("log in again", status_code=401, headers=SECURITY_HEADERS)
        return RedirectResponse(f"/login?{urlencode({'next': exc.next_url})}", status_code=303)

    # ---- routes ----------------------------------------------------------------------------

    def router(self) -> APIRouter:
        r = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
        r.add_api_route("/login", self.login_form, methods=["GET"])
        r.add_api_route("/login", self.login, methods=["POST"])
        r.add_api_route("/logout", self.logout, methods=["GET", "POST"])
        r.add_api_route("/", self.experiments, methods=["GET"])
        r.add_api_route("/experiments/{experiment_id}", self.experiment, methods=["GET"])
        r.add_api_route("/experiments/{experiment_id}/live", self.experiment_live, methods=["GET"])
        r.add_api_route("/runs/{run_id}", self.run, methods=["GET"])
        r.add_api_route("/compare", self.compare, methods=["GET"])
        for kind in KINDS:
            r.add_api_route(f"/{kind}", self._files_page(kind), methods=["GET"])
        return r

    def login_form(self, next: str = "/") -> HTMLResponse:
        return self.render("login.html", project=None, next=_safe_next(next), error=None)

    def login(
        self,
        request: Request,
        api_key: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        with self.sessionmaker() as db:
            key = db.execute(
                select(ApiKey).where(
                    ApiKey.key_hash == hash_key(api_key.strip()), ApiKey.revoked_at.is_(None)
                )
            ).scalar_one_or_none()
        if not api_key.strip() or key is None:
            error = "This key is not valid: it is unknown or was revoked."
            return self.render("login.html", 401, project=None, next=_safe_next(next), error=error)
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(
            COOKIE,
            self.signer.issue(str(key.id), key.project_id),
            max_age=MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response

    def experiments(
        self, request: Request, tag: str | None = None, status: str | None = None
    ) -> HTMLResponse:
        with self.sessionmaker() as db:
            project = self.project(request, db)
            rows = reads.experiments(db, project.id, tag=tag or None, status=status or None)
            known_tags, known_statuses = reads.experiment_filters(db, project.id)
        return self.render(
            "experiments.html",
            project=project,
            section="experiments",
            experiments=rows,
            tag=tag,
            status=status,
            known_tags=known_tags,
            known_statuses=known_statuses,
        )

    def experiment(self, request: Request, experiment_id: str) -> HTMLResponse:
        with self.sessionmaker() as db:
            project = self.project(request, db)
            # the live part's version as the page shows it: its first poll can answer 304
            version = experiment_version(db, project.id, experiment_id, request.url.query)
            found = reads.experiment(db, project.id, experiment_id)
        if found is None:
            return self.not_found(project, f"No experiment {experiment_id!r} in this project.")
        live_url = f"/experiments/{quote(experiment_id, safe='')}/live"
        if request.url.query:
            live_url += f"?{request.url.query}"
        try:
            context = self._experiment_context(found, request)
        except BadQuery as error:
            return self.render(
                "error.html", 400, project=project, status="Bad query", message=str(error)
            )
        return self.render(
            "experiment.html",
            project=project,
            section="experiments",
            live_url=live_url,
            live_version=version or "",
            **context,
        )

    def experiment_live(self, request: Request, experiment_id: str) -> Response:
        """The live fragment, or 304 when what it shows is as the poll's ``If-None-Match``
        says (the version is read first: what is rendered is at least as new as its tag)."""
        with self.sessionmaker() as db:
            project = self.project(request, db, fragment=True)
            etag = experiment_version(db, project.id, experiment_id, request.url.query)
            if etag is not None and etag in request.headers.get("if-none-match", ""):
                return Response(status_code=304, headers=SECURITY_HEADERS | {"ETag": etag})
            found = reads.experiment(db, project.id, experiment_id)
        if found is None:
            return self.render("error.html", 404, status="Not found", message="no such experiment")
        try:
            context = self._experiment_context(found, request)
        except BadQuery as error:
            return self.render("error.html", 400, status="Bad query", message=str(error))
        answer = self.render("experiment_live.html", **context)
        if etag is not None:
            answer.headers["ETag"] = etag
        return answer

    def _experiment_context(self, found: dict[str, Any], request: Request) -> dict[str, Any]:
        """The arms as the query string asks (search, filters, sort, page, columns, group);
        raises BadQuery for a malformed parameter."""
        base = f"/experiments/{quote(found['id'], safe='')}"
        page = arms_page(found, parse_query(request.query_params), base)
        return {
            "e": found,
            "arms": page.table,
            "view": page,
            "best": page.best,
            "axis_charts": views.axis_charts(found, page.axes, page.best),
        }

    def run(self, request: Request, run_id: str) -> HTMLResponse:
        with self.sessionmaker() as db:
            project = self.project(request, db)
            found = reads.run(db, project.id, run_id)
        if found is None:
            return self.not_found(project, f"No run {run_id!r} in this project.")
        return self.render(
            "run.html", project=project, section="experiments", r=found, curves=views.curves(found)
        )

    def compare(
        self,
        request: Request,
        runs: str | None = None,
        run: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    ) -> HTMLResponse:
        ids = views.run_ids_from_query(runs, run)
        with self.sessionmaker() as db:
            project = self.project(request, db)
            if not 2 <= len(ids) <= views.MAX_COMPARED:
                message = f"Pick 2 to {views.MAX_COMPARED} runs to compare (got {len(ids)}): tick them in an experiment's arms table, or /compare?runs=ID,ID."
                return self.render(
                    "error.html", 400, project=project, status="Nothing to compare", message=message
                )
            found = reads.runs(db, project.id, ids)
        missing = [i for i in ids if i not in found]
        if missing:
            return self.not_found(project, f"No run {missing[0]!r} in this project.")
        ordered = [found[i] for i in ids]
        for label, r in zip("abcdefghij", ordered, strict=False):
            r["label"] = label
        return self.render(
            "compare.html",
            project=project,
            section="experiments",
            runs=ordered,
            comparison=views.compare(ordered),
            curves_src=f"/compare/curves.json?{urlencode({'runs': ','.join(ids)})}",
        )

    def _files_page(self, kind: str) -> Callable[[Request], HTMLResponse]:
        def page(request: Request) -> HTMLResponse:
            with self.sessionmaker() as db:
                project = self.project(request, db)
                groups = reads.data_versions(db, project.id, kind)
            return self.render(
                "files.html",
                project=project,
                section=kind,
                kind=kind,
                title=KINDS[kind],
                groups=groups,
            )

        page.__name__ = f"{kind}_page"
        return page


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (no ``//host`` or ``\\``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _static_url() -> Callable[[str], str]:
    try:
        stamp = version("evsys")
    except PackageNotFoundError:
        stamp = "dev"
    stamp += f"-{int(max(p.stat().st_mtime for p in (HERE / 'static').iterdir()))}"
    return lambda name: f"/static/{quote(name)}?v={stamp}"
