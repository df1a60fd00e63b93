"""What the pages read from the database, always within one project, as plain dicts.

The UI reads the tables directly (it lives in the service) but never sees another project's
rows: every query here filters on ``project_id``, and an id of another project reads as absent.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from evsys.dashboard.models import (
    BenchmarkRecord,
    DataVersion,
    EvalRun,
    Experiment,
    Generation,
    Prediction,
    Run,
    StepMetric,
)

MAX_EXPERIMENTS = 500
MAX_PREDICTIONS = 200
"""A run page shows this many prediction rows (and says how many there are in all)."""
MAX_CURVES = 24


def experiments(
    db: Session, project_id: str, *, tag: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """The project's experiments, newest first, with their number of arms."""
    query = select(Experiment).where(Experiment.project_id == project_id)
    if status:
        query = query.where(Experiment.status == status)
    query = query.order_by(Experiment.created_at.desc())
    if not tag:
        query = query.limit(MAX_EXPERIMENTS)
    counts = dict(
        db.execute(
            select(Run.experiment_id, func.count())
            .where(Run.project_id == project_id)
            .group_by(Run.experiment_id)
        ).all()
    )
    # Tags are JSON: filtered here, portably.
    found = [e for e in db.scalars(query) if not tag or tag in (e.tags or [])]
    best_ids = {e.best_run_id for e in found if e.best_run_id}
    best_status = dict(
        db.execute(
            select(Run.id, Run.status).where(Run.project_id == project_id, Run.id.in_(best_ids))
        ).all()
        if best_ids
        else []
    )
    rows = []
    for experiment in found[:MAX_EXPERIMENTS]:
        row = experiment.to_dict()
        row["name"] = row["name"] or experiment.id
        row["run_count"] = counts.get(experiment.id, 0)
        if experiment.best_run_id and best_status.get(experiment.best_run_id) != "completed":
            row["best_score"] = None  # a failed best is no best, as on the experiment's page
        rows.append(row)
    return rows


def experiment_filters(db: Session, project_id: str) -> tuple[list[str], list[str]]:
    """The tags and statuses the project's experiments use, for the filter form."""
    found = db.execute(
        select(Experiment.tags, Experiment.status).where(Experiment.project_id == project_id)
    ).all()
    tags = sorted({t for row_tags, _ in found for t in row_tags or [] if isinstance(t, str)})
    return tags, sorted({status for _, status in found if status})


def experiment(db: Session, project_id: str, experiment_id: str) -> dict[str, Any] | None:
    """One experiment with its arms, its parent and its children; None when not in the project."""
    found = db.get(Experiment, (project_id, experiment_id))
    if found is None:
        return None
    out = found.to_dict()
    out["name"] = out["name"] or found.id
    parent = None
    if found.parent_experiment_id:
        parent = db.get(Experiment, (project_id, found.parent_experiment_id))
    out["parent"] = parent and {"id": parent.id, "name": parent.name or parent.id}
    children = db.scalars(
        select(Experiment)
        .where(Experiment.project_id == project_id)
        .where(Experiment.parent_experiment_id == found.id)
        .order_by(Experiment.created_at)
    )
    out["children"] = [{"id": c.id, "name": c.name or c.id} for c in children]
    arms = db.scalars(
        select(Run)
        .where(Run.project_id == project_id)
        .where(Run.experiment_id == found.id)
        .order_by(Run.created_at, Run.id)
    )
    out["runs"] = [_run(r) for r in arms]
    generations = db.scalars(
        select(Generation)
        .where(Generation.project_id == project_id, Generation.experiment_id == found.id)
        .order_by(Generation.index, Generation.created_at)
    )
    by_id = {r["id"]: r for r in out["runs"]}
    out["generations"] = [
        g.to_dict()
        | {
            "arms": sum(r["generation_id"] == g.id for r in out["runs"]),
            "best_run": by_id.get(g.best_run_id or ""),  # None: not an arm of this experiment
        }
        for g in generations
    ]
    return out


def run(db: Session, project_id: str, run_id: str) -> dict[str, Any] | None:
    """One run with its experiment, step metrics by name, evals, benchmarks and predictions."""
    found = db.get(Run, (project_id, run_id))
    if found is None:
        return None
    out = _run(found)
    parent = found.experiment_id and db.get(Experiment, (project_id, found.experiment_id))
    out["experiment"] = {
        "id": found.experiment_id or "",
        "name": (parent.name or parent.id) if parent else (found.experiment_id or "(none)"),
    }
    out["curves"] = _curves(db, project_id, found.id)
    parents = [i for i in found.parent_run_ids or [] if isinstance(i, str)]
    known = runs(db, project_id, parents) if parents else {}
    out["parents"] = [{"id": i, "name": known[i]["name"] if i in known else i} for i in parents]
    generation = found.generation_id and db.get(Generation, (project_id, found.generation_id))
    out["generation_index"] = generation.index if generation else None
    evals = db.scalars(
        select(EvalRun)
        .where(EvalRun.project_id == project_id, EvalRun.run_id == found.id)
        .order_by(EvalRun.step, EvalRun.created_at)
    )
    out["evals"] = [e.to_dict() for e in evals]
    benchmarks = db.scalars(
        select(BenchmarkRecord)
        .where(BenchmarkRecord.project_id == project_id, BenchmarkRecord.run_id == found.id)
        .order_by(BenchmarkRecord.created_at)
    )
    out["benchmarks"] = [
        {"name": b.benchmark_name or b.benchmark_id or "benchmark", "metrics": b.metrics or {}}
        for b in benchmarks
    ]
    _predictions(db, project_id, found.id, out)
    return out


def runs(db: Session, project_id: str, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The project's runs among ``run_ids``, by id, each with its experiment's id and name."""
    found = {
        r.id: _run(r)
        for r in db.scalars(select(Run).where(Run.project_id == project_id, Run.id.in_(run_ids)))
    }
    experiment_ids = {r["experiment_id"] for r in found.values() if r["experiment_id"]}
    names = dict(
        db.execute(
            select(Experiment.id, Experiment.name).where(
                Experiment.project_id == project_id, Experiment.id.in_(experiment_ids)
            )
        ).all()
    )
    for r in found.values():
        eid = r["experiment_id"] or ""
        r["experiment"] = {"id": eid, "name": names.get(eid) or eid or "(none)"}
    return found


def data_versions(db: Session, project_id: str, kind: str) -> list[dict[str, Any]]:
    """Datasets or benchmarks by name, each with its versions, newest first."""
    rows = db.scalars(
        select(DataVersion)
        .where(DataVersion.project_id == project_id, DataVersion.kind == kind)
        .order_by(DataVersion.name, DataVersion.version.desc())
    )
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row.name].append(row.to_dict())
    return [{"name": name, "versions": versions} for name, versions in groups.items()]


def _run(row: Run) -> dict[str, Any]:
    out = row.to_dict()
    out["name"] = out["name"] or row.id
    out["summary"] = {k: v for k, v in (row.summary or {}).items() if isinstance(k, str)}
    git = row.git if isinstance(row.git, dict) else {}  # any object a client sent: keep what reads
    commit = git.get("commit")
    out["git"] = {
        "commit": commit if isinstance(commit, str) else None,
        "diff": bool(git.get("diff")),
    }
    return out


def _curves(db: Session, project_id: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    found = db.execute(
        select(StepMetric.name, StepMetric.step, StepMetric.value, StepMetric.nonfinite)
        .where(StepMetric.project_id == project_id, StepMetric.run_id == run_id)
        .order_by(StepMetric.name, StepMetric.step)
    )
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for name, step, value, nonfinite in found:
        if nonfinite is not None:
            value = float(nonfinite)  # "NaN", "Infinity", "-Infinity": the chart names them
        if value is not None and (name in curves or len(curves) < MAX_CURVES):
            curves[name].append((step, value))
    return dict(curves)


def _predictions(db: Session, project_id: str, run_id: str, out: dict[str, Any]) -> None:
    scope = (Prediction.project_id == project_id, Prediction.run_id == run_id)
    total, judged, passed = db.execute(
        select(
            func.count(),
            func.count(Prediction.passed),
            func.count().filter(Prediction.passed.is_(True)),
        ).where(*scope)
    ).one()
    rows = db.scalars(
        select(Prediction).where(*scope).order_by(Prediction.id).limit(MAX_PREDICTIONS)
    )
    out["predictions"] = [p.to_dict() for p in rows]
    out["predictions_total"], out["predictions_judged"], out["predictions_passed"] = (
        total,
        judged,
        passed,
    )
