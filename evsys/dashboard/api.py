"""The dashboard's HTTP API (mounted under ``/api/dashboard/api``): health, whoami, writes and
project-scoped reads. Every query filters on the key's project; an object of another project
answers 404, exactly as a missing one does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from evsys.dashboard.auth import project_for_key
from evsys.dashboard.models import (
    BenchmarkRecord,
    EvalRun,
    Experiment,
    Generation,
    Prediction,
    Project,
    Run,
    StepMetric,
)
from evsys.dashboard.writes import TooDeep, UnknownObject, apply_batch, clean
from evsys.tracking.wire import MAX_WRITES, OPS, check_write

router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="an API key: evsys dashboard create-key")


def db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


DB = Annotated[Session, Depends(db)]


def current_project(
    session: DB, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Project:
    project = project_for_key(session, credentials.credentials if credentials else None)
    if project is None:
        raise HTTPException(
            401,
            "a valid API key is required (Authorization: Bearer <key>); "
            "create one with: evsys dashboard create-key --project NAME",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return project


CurrentProject = Annotated[Project, Depends(current_project)]


@router.get("/health", tags=["service"])
def health() -> dict[str, str]:
    from evsys import __version__

    return {"status": "ok", "version": __version__}


@router.get("/sdk/whoami", tags=["sdk"])
def whoami(
    project: CurrentProject,
    project_id: Annotated[
        str | None,
        Query(
            description="the project the caller expects (EVSYS_PROJECT_ID): 403 if the key opens another"
        ),
    ] = None,
) -> dict[str, str]:
    if project_id is not None and project_id not in (project.id, project.name):
        raise HTTPException(403, f"this key belongs to another project than {project_id!r}")
    return {"project_id": project.id, "project_name": project.name}


async def json_body(request: Request) -> Any:
    """The request body as JSON, whatever its Content-Type says."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise HTTPException(422, f"body: not JSON ({error})") from None
    except RecursionError:
        raise HTTPException(422, "body: JSON nested too deeply") from None


WRITES_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["writes"],
                "properties": {
                    "writes": {
                        "type": "array",
                        "maxItems": MAX_WRITES,
                        "items": {
                            "type": "object",
                            "required": ["id", "op", "data"],
                            "properties": {
                                "id": {"type": "string", "description": "client-made uuid4 hex"},
                                "op": {"type": "string", "enum": list(OPS)},
                                "data": {"type": "object"},
                                "time": {
                                    "type": "number",
                                    "description": "unix seconds, when the client made the "
                                    "write: of two values of a step metric the later stays",
                                },
                                "create_queued": {
                                    "type": "boolean",
                                    "description": "an update whose create its client made "
                                    "(and may not have sent yet): no 404 for a missing object",
                                },
                            },
                        },
                    }
                },
            }
        }
    },
}


@router.post("/sdk/writes", tags=["sdk"], openapi_extra={"requestBody": WRITES_BODY})
def post_writes(
    request: Request,
    session: DB,
    project: CurrentProject,
    payload: Annotated[Any, Depends(json_body)],
) -> dict[str, int]:
    """Apply a batch of writes in one transaction; a replayed write id counts as a duplicate.
    The fields of each op's ``data`` are ``evsys.tracking.wire.OPS``. An update of an object
    the project does not hold answers 404 and applies nothing of the batch, unless the write
    says ``"create_queued": true``."""
    writes = _checked_writes(payload)
    with request.app.state.write_lock:
        try:
            applied, duplicates = apply_batch(session, project.id, writes)
        except UnknownObject as error:
            session.rollback()
            raise HTTPException(404, str(error)) from None
        session.commit()
    return {"applied": applied, "duplicates": duplicates}


def _checked_writes(payload: Any) -> list[dict[str, Any]]:
    """The batch's writes, or a 422 naming the first bad write's index and field."""
    if not isinstance(payload, dict) or set(payload) != {"writes"}:
        raise HTTPException(422, 'the body must be {"writes": [...]}')
    writes = payload["writes"]
    if not isinstance(writes, list):
        raise HTTPException(422, "writes: must be a list")
    if len(writes) > MAX_WRITES:
        raise HTTPException(422, f"writes: {len(writes)} writes; at most {MAX_WRITES} in one batch")
    checked = []
    for index, write in enumerate(writes):
        problem = check_write(write)
        if problem:
            raise HTTPException(422, f"writes[{index}].{problem}")
        try:
            checked.append({**write, "data": clean(write["data"])})
        except TooDeep as error:
            raise HTTPException(422, f"writes[{index}].data: {error}") from None
    return checked


# --- reads ---------------------------------------------------------------------------------------


def _get(session: Session, model: type, project: Project, object_id: str, what: str) -> Any:
    row = session.get(model, (project.id, object_id))
    if row is None:
        raise HTTPException(404, f"{what} {object_id!r} not found in this project")
    return row


@router.get("/experiments", tags=["reads"])
def list_experiments(
    session: DB,
    project: CurrentProject,
    tag: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> dict[str, list[dict[str, Any]]]:
    query = select(Experiment).where(Experiment.project_id == project.id)
    if status is not None:
        query = query.where(Experiment.status == status)
    rows = session.execute(query.order_by(Experiment.created_at.desc())).scalars()
    # Tags are a JSON list, filtered here: portable to both databases, and projects are small.
    found = [row.to_dict() for row in rows if tag is None or tag in (row.tags or [])]
    return {"experiments": found[:limit]}


@router.get("/experiments/{experiment_id}", tags=["reads"])
def get_experiment(experiment_id: str, session: DB, project: CurrentProject) -> dict[str, Any]:
    experiment = _get(session, Experiment, project, experiment_id, "experiment")
    scoped = {"project_id": project.id, "experiment_id": experiment_id}
    runs = session.execute(select(Run).filter_by(**scoped).order_by(Run.created_at)).scalars()
    generations = session.execute(
        select(Generation).filter_by(**scoped).order_by(Generation.index)
    ).scalars()
    children = session.execute(
        select(Experiment.id)
        .filter_by(project_id=project.id, parent_experiment_id=experiment_id)
        .order_by(Experiment.created_at)
    ).scalars()
    return {
        **experiment.to_dict(),
        "runs": [run.to_dict() for run in runs],
        "generations": [generation.to_dict() for generation in generations],
        "children": list(children),
    }


@router.get("/runs", tags=["reads"])
def list_runs(
    session: DB,
    project: CurrentProject,
    experiment_id: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, list[dict[str, Any]]]:
    query = select(Run).where(Run.project_id == project.id)
    if experiment_id is not None:
        query = query.where(Run.experiment_id == experiment_id)
    if status is not None:
        query = query.where(Run.status == status)
    rows = session.execute(query.order_by(Run.created_at).limit(limit)).scalars()
    return {"runs": [row.to_dict() for row in rows]}


@router.get("/runs/{run_id}", tags=["reads"])
def get_run(run_id: str, session: DB, project: CurrentProject) -> dict[str, Any]:
    return _get(session, Run, project, run_id, "run").to_dict()


@router.get("/runs/{run_id}/steps", tags=["reads"])
def get_steps(
    run_id: str, session: DB, project: CurrentProject, name: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    _get(session, Run, project, run_id, "run")
    query = select(
        StepMetric.step, StepMetric.name, StepMetric.value, StepMetric.nonfinite
    ).filter_by(project_id=project.id, run_id=run_id)
    if name is not None:
        query = query.where(StepMetric.name == name)
    rows = session.execute(query.order_by(StepMetric.step, StepMetric.name))
    # a NaN or infinite value as its name ("NaN", "Infinity", "-Infinity"): JSON has no NaN
    return {"steps": [{"step": s, "name": n, "value": x or v} for s, n, v, x in rows]}


@router.get("/runs/{run_id}/evals", tags=["reads"])
def get_evals(run_id: str, session: DB, project: CurrentProject) -> dict[str, list[dict[str, Any]]]:
    _get(session, Run, project, run_id, "run")
    rows = session.execute(
        select(EvalRun).filter_by(project_id=project.id, run_id=run_id).order_by(EvalRun.created_at)
    ).scalars()
    return {"evals": [row.to_dict() for row in rows]}


@router.get("/runs/{run_id}/predictions", tags=["reads"])
def get_predictions(
    run_id: str,
    session: DB,
    project: CurrentProject,
    eval_run_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, list[dict[str, Any]]]:
    _get(session, Run, project, run_id, "run")
    query = select(Prediction).filter_by(project_id=project.id, run_id=run_id)
    if eval_run_id is not None:
        query = query.where(Prediction.eval_run_id == eval_run_id)
    rows = session.execute(query.order_by(Prediction.id).limit(limit)).scalars()
    return {"predictions": [_prediction(row) for row in rows]}


def _prediction(row: Prediction) -> dict[str, Any]:
    out = row.to_dict()
    del out["id"], out["position"]
    return out


@router.get("/runs/{run_id}/benchmarks", tags=["reads"])
def get_benchmark_records(
    run_id: str, session: DB, project: CurrentProject
) -> dict[str, list[dict[str, Any]]]:
    _get(session, Run, project, run_id, "run")
    rows = session.execute(
        select(BenchmarkRecord)
        .filter_by(project_id=project.id, run_id=run_id)
        .order_by(BenchmarkRecord.created_at)
    ).scalars()
    return {"benchmarks": [row.to_dict() for row in rows]}
