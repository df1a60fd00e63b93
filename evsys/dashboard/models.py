"""The dashboard's tables (SQLAlchemy 2, typed), portable to SQLite and PostgreSQL.

Objects that clients create (experiments, generations, runs, eval runs, benchmark records) are
keyed by ``(project_id, id)`` with the client-made id: each project is its own namespace, so a
key of project B can neither reach nor detect an object of project A. References between them
(a run's experiment, an experiment's parent) are plain columns, not foreign keys: writes from
several machines' mirrors may arrive in any order, and a run must be storable before its
experiment's creation has reached the service.

Any change here needs a new Alembic revision in ``migrations/versions/``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from evsys.tracking.wire import wire_number

# JSON on SQLite (text), JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")
ID = String(128)  # client-made ids, checked by evsys.tracking.wire (MAX_ID_LENGTH)

# Constraint names fixed by convention, so that migrations can refer to them on both databases.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON for the API: every column but ``project_id``; times in ISO 8601 UTC."""
        out: dict[str, Any] = {"id": json_value(self.id)} if "id" in self.__table__.c else {}
        for column in self.__table__.columns:
            if column.key in ("project_id", "field_times"):
                continue
            out[column.key] = json_value(getattr(self, column.key))
        return out


def json_value(value: Any) -> Any:
    """A stored value as JSON: aware ISO times (SQLite hands back naive UTC), a NaN or
    infinite number as its name (``wire.NONFINITE``: JSON has no NaN)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return wire_number(value)
    return value


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """A key is shown once; only its SHA-256 is kept (keys are 256-bit random, so a plain hash
    is enough: there is nothing to brute-force). ``prefix`` names the key in listings."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProjectScoped:
    """Columns of every client-made object: its project and its client-made id."""

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FieldTimes:
    """Objects that several writers update: field → the client time its value was written at
    (:mod:`evsys.dashboard.object_writes`); bookkeeping, left out of the API's JSON."""

    field_times: Mapped[dict[str, float] | None] = mapped_column(JSONType)


class Experiment(ProjectScoped, FieldTimes, Base):
    __tablename__ = "experiments"
    name: Mapped[str | None] = mapped_column(Text)
    hypothesis: Mapped[str | None] = mapped_column(Text)
    success_metric: Mapped[str | None] = mapped_column(Text)
    direction: Mapped[str | None] = mapped_column(String(16))
    tags: Mapped[list[str] | None] = mapped_column(JSONType)
    project_goal_id: Mapped[str | None] = mapped_column(Text)
    parent_experiment_id: Mapped[str | None] = mapped_column(Text, index=True)
    status: Mapped[str | None] = mapped_column(Text, index=True)
    sweep_plan: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    best_run_id: Mapped[str | None] = mapped_column(Text)
    best_score: Mapped[float | None] = mapped_column(Float)
    conclusion: Mapped[str | None] = mapped_column(Text)


class Generation(ProjectScoped, FieldTimes, Base):
    __tablename__ = "generations"
    experiment_id: Mapped[str | None] = mapped_column(ID, index=True)
    index: Mapped[int | None] = mapped_column(BigInteger)
    parent_run_ids: Mapped[list[str] | None] = mapped_column(JSONType)
    proposer: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Text)
    best_run_id: Mapped[str | None] = mapped_column(Text)
    best_score: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Run(ProjectScoped, FieldTimes, Base):
    __tablename__ = "runs"
    # An experiment's arms in creation order, without a sort (a thousand-arm sweep's page).
    __table_args__ = (
        Index(
            "ix_runs_project_id_experiment_id_created_at",
            "project_id",
            "experiment_id",
            "created_at",
        ),
    )
    experiment_id: Mapped[str | None] = mapped_column(ID, index=True)
    name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Text, index=True)
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    config_hash: Mapped[str | None] = mapped_column(Text)
    overrides: Mapped[list[str] | None] = mapped_column(JSONType)
    group_id: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    git: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    generation_id: Mapped[str | None] = mapped_column(Text, index=True)
    parent_run_ids: Mapped[list[str] | None] = mapped_column(JSONType)
    data_lineage: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class StepMetric(Base):
    """One value of one metric at one step: unique by (run, step, name), so a replayed or
    resumed step replaces the value instead of adding a row, when it was written later
    (``written_at``, the client's clock when the value was logged; null counts as oldest)."""

    __tablename__ = "step_metrics"
    __table_args__ = (
        UniqueConstraint("project_id", "run_id", "step", "name"),
        # One metric of many runs (the overlaid curves) and the metrics a run logged, read from
        # the index alone (it covers what the charts read).
        Index(
            "ix_step_metrics_curves",
            "project_id",
            "run_id",
            "name",
            "step",
            "value",
            "written_at",
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(ID)
    step: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(256))  # wire.MAX_NAME_LENGTH
    value: Mapped[float | None] = mapped_column(Float)  # null when nonfinite is set
    # "NaN", "Infinity" or "-Infinity" (wire.NONFINITE): SQLite cannot store a NaN in a REAL
    nonfinite: Mapped[str | None] = mapped_column(String(9))
    written_at: Mapped[float | None] = mapped_column(Float)  # unix seconds, client clock


class EvalRun(ProjectScoped, Base):
    __tablename__ = "eval_runs"
    __table_args__ = (Index("ix_eval_runs_project_id_run_id", "project_id", "run_id"),)
    run_id: Mapped[str] = mapped_column(ID)
    name: Mapped[str | None] = mapped_column(Text)
    step: Mapped[int | None] = mapped_column(BigInteger)
    benchmark_id: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)


class Prediction(Base):
    """One row of a ``predictions.add``: the op's id and the row's position in it identify the
    row, so the same rows sent twice are stored once."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("project_id", "batch_id", "position"),
        Index("ix_predictions_project_id_run_id", "project_id", "run_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    batch_id: Mapped[str] = mapped_column(ID)
    position: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str] = mapped_column(ID)
    eval_run_id: Mapped[str | None] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    completion: Mapped[str] = mapped_column(Text)
    expected: Mapped[Any | None] = mapped_column(JSONType)
    passed: Mapped[bool | None] = mapped_column()
    score: Mapped[float | None] = mapped_column(Float)  # null when score_nonfinite is set
    # "NaN", "Infinity" or "-Infinity": a judge's NaN is a fact, not a missing score
    score_nonfinite: Mapped[str | None] = mapped_column(String(9))
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    def to_dict(self) -> dict[str, Any]:
        """As every row; ``score`` a non-finite one's name where it was NaN or infinite."""
        out = super().to_dict()
        nonfinite = out.pop("score_nonfinite")
        if nonfinite is not None:
            out["score"] = nonfinite
        return out


class BenchmarkRecord(ProjectScoped, Base):
    __tablename__ = "benchmark_records"
    __table_args__ = (Index("ix_benchmark_records_project_id_run_id", "project_id", "run_id"),)
    run_id: Mapped[str] = mapped_column(ID)
    benchmark_id: Mapped[str | None] = mapped_column(Text)
    benchmark_name: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)


class DataVersion(Base):
    """One immutable version of a dataset or a benchmark; the bytes live in the file store at
    ``path`` (relative to the store, made by the service, never from a client's name)."""

    __tablename__ = "data_versions"
    __table_args__ = (UniqueConstraint("project_id", "kind", "name", "version"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "datasets" | "benchmarks"
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))  # "jsonl" | "tar.gz"
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AppliedWrite(Base):
    """Every write applied, by its client-made id (within its project): a replayed write finds
    its id here and changes nothing."""

    __tablename__ = "applied_writes"
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    op: Mapped[str] = mapped_column(String(32))
    time: Mapped[float | None] = mapped_column(Float)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
