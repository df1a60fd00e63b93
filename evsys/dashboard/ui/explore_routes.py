"""The UI's data endpoints (session cookie, like the pages): what the page's script draws, and
the exports. All JSON or CSV, never markup; each reads the experiment once and its curves in
one query.

    /experiments/{id}/arms.json|.csv      the arms table, filtered and sorted, every page
    /experiments/{id}/curves.json|.csv    one metric's curves of the matched arms (downsampled)
    /experiments/{id}/axes.json           parallel coordinates and a heat map of two axes
    /compare/curves.json?runs=a,b         one metric's curves of the compared runs

A malformed parameter answers 400 and an unknown metric or key 404, as ``{"detail": …}``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session, sessionmaker

from evsys.dashboard.models import Project
from evsys.dashboard.ui import arm_charts, curve_reads, reads, views
from evsys.dashboard.ui.arm_query import (
    BadQuery,
    arm_values,
    parse_query,
    select_arms,
    value_text,
)
from evsys.dashboard.ui.experiment_view import export_rows
from evsys.tracking.wire import wire_number

MAX_OVERLAID = 1000
DEFAULT_OVERLAID = 100
"""Curves drawn at once by default: the first arms in the table's order."""
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Explore:
    def __init__(
        self,
        sessionmaker: sessionmaker[Session],
        project: Callable[[Request, Session, bool], Project],
        headers: dict[str, str],
    ):
        self.sessionmaker, self.project, self.headers = sessionmaker, project, headers

    def router(self) -> APIRouter:
        r = APIRouter(include_in_schema=False)
        base = "/experiments/{experiment_id}"
        r.add_api_route(f"{base}/arms.json", self.arms_json, methods=["GET"])
        r.add_api_route(f"{base}/arms.csv", self.arms_csv, methods=["GET"])
        r.add_api_route(f"{base}/curves.json", self.curves_json, methods=["GET"])
        r.add_api_route(f"{base}/curves.csv", self.curves_csv, methods=["GET"])
        r.add_api_route(f"{base}/axes.json", self.axes_json, methods=["GET"])
        r.add_api_route("/compare/curves.json", self.compare_curves_json, methods=["GET"])
        r.add_api_route("/compare/curves.csv", self.compare_curves_csv, methods=["GET"])
        return r

    # ---- answers ------------------------------------------------------------------------

    def json(self, body: Any, code: int = 200, *, finite: bool = False) -> Response:
        """``body`` as JSON; a NaN or infinity in it as its name. ``finite``: the body holds
        none (curves: ``curve_reads`` makes them gaps), so orjson may write it when it is
        installed (the same JSON, ten times faster: a thousand curves in 10 ms, not 60)."""
        fast = _orjson() if finite else None
        if fast is not None:
            text: str | bytes = fast.dumps(body, default=str)
            return Response(text, code, media_type="application/json", headers=self.headers)
        try:
            text = json.dumps(body, default=str, allow_nan=False, separators=(",", ":"))
        except ValueError:  # a NaN or infinity in a run's summary: JSON names them as text
            text = json.dumps(_finite(body), default=str, separators=(",", ":"))
        return Response(text, code, media_type="application/json", headers=self.headers)

    def refuse(self, code: int, detail: str) -> Response:
        return self.json({"detail": detail}, code)

    # ---- the arms table -----------------------------------------------------------------

    def arms_json(self, request: Request, experiment_id: str) -> Response:
        return self._arms(request, experiment_id, "json")

    def arms_csv(self, request: Request, experiment_id: str) -> Response:
        return self._arms(request, experiment_id, "csv")

    def _arms(self, request: Request, experiment_id: str, form: str) -> Response:
        try:
            query = parse_query(request.query_params)
        except BadQuery as error:
            return self.refuse(400, str(error))
        with self.sessionmaker() as db:
            project = self.project(request, db, True)
            found = reads.experiment(db, project.id, experiment_id)
        if found is None:
            return self.refuse(404, f"experiment: no {experiment_id!r} in this project")
        keys, labels, rows = export_rows(found, query)
        if form == "csv":
            return self.csv("arms.csv", labels, rows)
        columns = [{"key": k, "label": label} for k, label in zip(keys, labels, strict=True)]
        body = {"columns": columns, "rows": [dict(zip(keys, r, strict=True)) for r in rows]}
        return self.json(body)

    # ---- curves -------------------------------------------------------------------------

    def curves_json(self, request: Request, experiment_id: str) -> Response:
        return self._curves(request, experiment_id, "json")

    def curves_csv(self, request: Request, experiment_id: str) -> Response:
        return self._curves(request, experiment_id, "csv")

    def _curves(self, request: Request, experiment_id: str, form: str) -> Response:
        params = request.query_params
        try:
            query = parse_query(params)
            x_mode, points, limit = _curve_options(params)
        except BadQuery as error:
            return self.refuse(400, str(error))
        with self.sessionmaker() as db:
            project = self.project(request, db, True)
            found = reads.experiment(db, project.id, experiment_id)
            if found is None:
                return self.refuse(404, f"experiment: no {experiment_id!r} in this project")
            table, _, _ = views.arms_table(found, query.sort, query.order, "")
            matched = {a["id"]: a for a in select_arms(found["runs"], query)}
            ordered = [r for r in table.rows if r["id"] in matched]
            metric = params.get("metric") or ""
            if not query.group:
                chosen = ordered[:limit]
                return self._answer_curves(db, project, chosen, metric, (x_mode, points), form)
            if x_mode != "step" or points is None:
                return self.refuse(400, "group: grouped curves are by step, in buckets")
            # the first 1,000 matching arms count towards their groups' means, whatever the limit
            chosen = ordered[:MAX_OVERLAID]
            group_of = {r["id"]: _group_label(query.group, matched[r["id"]]) for r in chosen}
            options = (x_mode, points)
            return self._answer_curves(db, project, chosen, metric, options, form, group_of)

    def compare_curves_json(self, request: Request) -> Response:
        return self._compare_curves(request, "json")

    def compare_curves_csv(self, request: Request) -> Response:
        return self._compare_curves(request, "csv")

    def _compare_curves(self, request: Request, form: str) -> Response:
        params = request.query_params
        try:
            x_mode, points, _ = _curve_options(params)
            ids = views.run_ids_from_query(params.get("runs"), params.getlist("run"))
            if not 1 <= len(ids) <= views.MAX_COMPARED:
                raise BadQuery(f"runs: {len(ids)} runs, 1 to {views.MAX_COMPARED}")
        except BadQuery as error:
            return self.refuse(400, str(error))
        with self.sessionmaker() as db:
            project = self.project(request, db, True)
            found = reads.runs(db, project.id, ids)
            missing = [i for i in ids if i not in found]
            if missing:
                return self.refuse(404, f"runs: no {missing[0]!r} in this project")
            chosen = [found[i] for i in ids]
            metric = params.get("metric") or ""
            return self._answer_curves(db, project, chosen, metric, (x_mode, points), form)

    def _answer_curves(
        self,
        db: Session,
        project: Project,
        chosen: list[dict[str, Any]],
        asked: str,
        options: tuple[str, int | None],
        form: str,
        group_of: dict[str, str] | None = None,
    ) -> Response:
        """One metric's curves of ``chosen`` (``asked``, else the first name), or of their
        groups (``group_of``: run id → group) as mean ± std; 404 for a metric none logged."""
        x_mode, points = options
        if points is None and len(chosen) > curve_reads.BAND_RUNS:
            return self.refuse(
                400, f"points: all is for {curve_reads.BAND_RUNS} runs at most (limit=…)"
            )
        ids = [r["id"] for r in chosen]
        names = curve_reads.metric_names(db, project.id, ids)
        metric = asked or (names[0] if names else "")
        if asked and asked not in names:
            return self.refuse(404, f"metric: no step metric {asked[:200]!r} in these runs")
        found = {}
        if metric:
            found = curve_reads.curves(db, project.id, ids, metric, x_mode=x_mode, points=points)
        labels = {r["id"]: r["name"] for r in chosen}
        if group_of is not None:
            found = curve_reads.group_curves(found, group_of)
            sizes = Counter(group_of.values())
            labels = {g: f"{g} ({sizes[g]} arm{'s' if sizes[g] != 1 else ''})" for g in found}
        rows = curve_reads.curve_rows(labels, found)
        if form == "csv":
            header = ["run_id", "name", x_mode, metric]
            return self.csv_text("curves.csv", _curves_csv(header, rows))
        body = {"metric": metric, "metrics": names, "x": x_mode, "runs": rows}
        return self.json(body, finite=True)

    # ---- parallel coordinates and the heat map ------------------------------------------

    def axes_json(self, request: Request, experiment_id: str) -> Response:
        params = request.query_params
        try:
            query = parse_query(params)
        except BadQuery as error:
            return self.refuse(400, str(error))
        with self.sessionmaker() as db:
            project = self.project(request, db, True)
            found = reads.experiment(db, project.id, experiment_id)
        if found is None:
            return self.refuse(404, f"experiment: no {experiment_id!r} in this project")
        axes = list(views.swept_axes(found["runs"]))
        arms = select_arms(found["runs"], query)
        metric = params.get("metric") or found.get("success_metric")
        known_metrics = {m for a in found["runs"] for m in a["summary"]}
        if params.get("metric") and metric not in known_metrics:
            return self.refuse(404, f"metric: no arm has {metric!r}")
        hx, hy = params.get("hx") or "", params.get("hy") or ""
        for name, key in (("hx", hx), ("hy", hy)):
            if key and key not in axes:
                return self.refuse(404, f"{name}: {key[:100]!r} is not a swept axis")
        hx = hx or (axes[0] if axes else "")
        hy = hy or next((a for a in axes if a != hx), hx)
        body: dict[str, Any] = {"swept": axes, "metrics": sorted(known_metrics)}
        body["parallel"] = arm_charts.parallel(arms, axes, metric)
        body["heatmap"] = arm_charts.heatmap(arms, hx, hy, metric) if hx else None
        return self.json(body)

    # ---- CSV --------------------------------------------------------------------------------

    def csv(self, filename: str, header: list[str], rows: Iterable[list[Any]]) -> Response:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([_csv_cell(h) for h in header])
        writer.writerows([_csv_cell(v) for v in row] for row in rows)
        return self.csv_text(filename, buffer.getvalue())

    def csv_text(self, filename: str, text: str) -> Response:
        headers = self.headers | {"Content-Disposition": f'attachment; filename="{filename}"'}
        return Response(text, media_type="text/csv; charset=utf-8", headers=headers)


def _curves_csv(header: list[str], rows: list[dict[str, Any]]) -> str:
    """The curves as ``csv.writer`` writes them (a float by its repr, None as nothing, CRLF),
    with each run's id and name written once for all its lines: x and y are numbers or None
    (``curve_reads`` leaves no NaN), which need no quoting nor formula check (a thousand curves
    of 50 points: 30 ms instead of 170)."""
    out = io.StringIO()
    csv.writer(out).writerow([_csv_cell(h) for h in header])
    for row in rows:
        first = io.StringIO()
        csv.writer(first).writerow([_csv_cell(row["id"]), _csv_cell(row["name"])])
        prefix = first.getvalue().removesuffix("\r\n")
        out.write(
            "".join(
                f"{prefix},{x!r},{'' if y is None else repr(y)}\r\n"
                for x, y in zip(row["x"], row["y"], strict=True)
            )
        )
    return out.getvalue()


def _orjson() -> Any:
    """orjson when it is installed (not a dependency: the standard encoder serves without)."""
    try:
        import orjson
    except ImportError:
        return None
    return orjson


def _group_label(key: str, arm: dict[str, Any]) -> str:
    values = arm_values(arm)
    return f"{key}={value_text(values[key])}" if key in values else f"{key} (absent)"


def _curve_options(params: Any) -> tuple[str, int | None, int]:
    """``x`` (step or time), ``points`` (a run's buckets, or ``all``: every logged point) and
    ``limit`` (how many of the matching arms, in the table's order)."""
    x_mode = params.get("x") or "step"
    if x_mode not in curve_reads.X_MODES:
        raise BadQuery(f"x: {x_mode[:40]!r} is not one of {list(curve_reads.X_MODES)}")
    points: int | None = None
    if params.get("points") != "all":
        points = _bounded(params.get("points"), "points", curve_reads.DEFAULT_POINTS, 2, 2000)
    limit = _bounded(params.get("limit"), "limit", DEFAULT_OVERLAID, 1, MAX_OVERLAID)
    return x_mode, points, limit


def _bounded(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise BadQuery(f"{name}: {text[:40]!r} is not a whole number in {low}..{high}")
    return int(text)


def _csv_cell(value: Any) -> Any:
    """A value for a CSV cell; text that a spreadsheet would run as a formula gets a leading
    quote (it is a run's text, data to read, never to execute)."""
    if isinstance(value, float) and not math.isfinite(value):
        return wire_number(value)
    if isinstance(value, dict | list):
        value = json.dumps(value, default=str)
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return wire_number(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
