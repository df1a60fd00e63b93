"""Every arm the evolve sweeper proposed, and its result, in an RDB through SQLAlchemy 2.

Why not Optuna's own storage: hydra-optuna-sweeper pins optuna < 3, and optuna 2.10's
``RDBStorage`` does not work with SQLAlchemy 2 (which the dashboard needs):
``optuna.create_study(storage="sqlite:///…")`` fails with an AssertionError in
``get_current_version``. So the study is kept here, in evsys's own tables — a SQLite file
``study.db`` in the sweep directory by default, or the PostgreSQL (any SQLAlchemy) URL of
``hydra.sweeper.storage`` — so that Slurm arms and a resumed sweep share it. The Optuna proposer
rebuilds its in-memory study from these rows at start (see :mod:`evsys.evolve.proposers.optuna`).

Tables: ``evolve_meta`` (the sweep's fingerprint), ``evolve_arms`` (one row per proposed arm:
generation, overrides, parameters, parents, the proposer's own data, state, objective values,
error), ``evolve_generations`` (started / complete), ``evolve_illegal`` (proposals refused
before they could run, with why) and ``evolve_dropped`` (legal proposals not launched: repeats of
an earlier arm, answers past what was asked).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROPOSED, COMPLETE, FAILED = "proposed", "complete", "failed"
STUDY_DB = "study.db"


@dataclass
class StoredArm:
    number: int
    name: str
    generation: int
    overrides: list[str]
    params: dict[str, Any]
    parents: list[str] = field(default_factory=list)
    proposal: dict[str, Any] = field(default_factory=dict)
    """What the proposer needs to replay the arm (Optuna: distributions, system attrs)."""
    state: str = PROPOSED
    values: list[float] | None = None
    error: str | None = None
    run_id: str | None = None


class EvolveStore:
    """The sweep's arms in ``url`` (``sqlite:///…`` or ``postgresql://…``)."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = url
        self.engine = sa.create_engine(url)
        meta = sa.MetaData()
        self.meta_table = sa.Table(
            "evolve_meta",
            meta,
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )
        self.arms = sa.Table(
            "evolve_arms",
            meta,
            sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("name", sa.String(200), unique=True, nullable=False),
            sa.Column("generation", sa.Integer, nullable=False),
            sa.Column("overrides", sa.Text, nullable=False),
            sa.Column("params", sa.Text, nullable=False),
            sa.Column("parents", sa.Text, nullable=False),
            sa.Column("proposal", sa.Text, nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("vals", sa.Text),
            sa.Column("error", sa.Text),
            sa.Column("run_id", sa.String(200)),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("finished_at", sa.String(40)),
        )
        self.generations = sa.Table(
            "evolve_generations",
            meta,
            sa.Column("generation", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("started_at", sa.String(40), nullable=False),
            sa.Column("finished_at", sa.String(40)),
        )
        self.illegal = sa.Table(
            "evolve_illegal",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("generation", sa.Integer, nullable=False),
            sa.Column("proposal", sa.Text, nullable=False),
            sa.Column("problems", sa.Text, nullable=False),
        )
        self.dropped = sa.Table(
            "evolve_dropped",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("generation", sa.Integer, nullable=False),
            sa.Column("proposal", sa.Text, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
        )
        meta.create_all(self.engine)

    @classmethod
    def for_sweep(cls, sweep_dir: Path, url: str | None) -> EvolveStore:
        return cls(url or f"sqlite:///{(sweep_dir / STUDY_DB).resolve()}")

    def close(self) -> None:
        self.engine.dispose()

    # -- the sweep's fingerprint ------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        import sqlalchemy as sa

        with self.engine.connect() as db:
            row = db.execute(sa.select(self.meta_table.c.value).where(self.meta_table.c.key == key))
            value = row.scalar_one_or_none()
        return value

    def set_meta(self, key: str, value: str) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as db:
            db.execute(sa.delete(self.meta_table).where(self.meta_table.c.key == key))
            db.execute(sa.insert(self.meta_table).values(key=key, value=value))

    # -- arms -------------------------------------------------------------------------------

    def add_arm(self, arm: StoredArm) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as db:
            db.execute(
                sa.insert(self.arms).values(
                    number=arm.number,
                    name=arm.name,
                    generation=arm.generation,
                    overrides=json.dumps(arm.overrides),
                    params=json.dumps(arm.params, default=str),
                    parents=json.dumps(arm.parents),
                    proposal=json.dumps(arm.proposal, default=str),
                    state=arm.state,
                    created_at=_now(),
                )
            )

    def finish_arm(self, arm: StoredArm) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as db:
            db.execute(
                sa.update(self.arms)
                .where(self.arms.c.number == arm.number)
                .values(
                    state=arm.state,
                    vals=json.dumps(arm.values) if arm.values is not None else None,
                    error=arm.error,
                    run_id=arm.run_id,
                    finished_at=_now(),
                )
            )

    def load_arms(self) -> list[StoredArm]:
        import sqlalchemy as sa

        with self.engine.connect() as db:
            rows = db.execute(sa.select(self.arms).order_by(self.arms.c.number)).mappings().all()
        return [
            StoredArm(
                number=row["number"],
                name=row["name"],
                generation=row["generation"],
                overrides=json.loads(row["overrides"]),
                params=json.loads(row["params"]),
                parents=json.loads(row["parents"]),
                proposal=json.loads(row["proposal"]),
                state=row["state"],
                values=json.loads(row["vals"]) if row["vals"] else None,
                error=row["error"],
                run_id=row["run_id"],
            )
            for row in rows
        ]

    # -- generations ------------------------------------------------------------------------

    def start_generation(self, generation: int) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as db:
            db.execute(
                sa.delete(self.generations).where(self.generations.c.generation == generation)
            )
            db.execute(
                sa.insert(self.generations).values(
                    generation=generation, state="running", started_at=_now()
                )
            )

    def complete_generation(self, generation: int) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as db:
            db.execute(
                sa.update(self.generations)
                .where(self.generations.c.generation == generation)
                .values(state="complete", finished_at=_now())
            )

    def complete_generations(self) -> set[int]:
        import sqlalchemy as sa

        table = self.generations
        with self.engine.connect() as db:
            rows = db.execute(sa.select(table.c.generation).where(table.c.state == "complete"))
            return {row[0] for row in rows}

    # -- illegal proposals ------------------------------------------------------------------

    def add_illegal(self, generation: int, proposal: Any, problems: list[str]) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as db:
            db.execute(
                sa.insert(self.illegal).values(
                    generation=generation,
                    proposal=json.dumps(proposal, default=str),
                    problems=json.dumps(problems),
                )
            )

    def load_illegal(self) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        with self.engine.connect() as db:
            rows = db.execute(sa.select(self.illegal).order_by(self.illegal.c.id)).mappings().all()
        return [
            {
                "generation": row["generation"],
                "proposal": json.loads(row["proposal"]),
                "problems": json.loads(row["problems"]),
            }
            for row in rows
        ]

    # -- legal proposals not launched -------------------------------------------------------

    def add_dropped(self, generation: int, proposal: Any, reason: str) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as db:
            db.execute(
                sa.insert(self.dropped).values(
                    generation=generation,
                    proposal=json.dumps(proposal, default=str),
                    reason=reason,
                )
            )

    def load_dropped(self) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        with self.engine.connect() as db:
            rows = db.execute(sa.select(self.dropped).order_by(self.dropped.c.id)).mappings()
            return [
                {
                    "generation": row["generation"],
                    "proposal": json.loads(row["proposal"]),
                    "reason": row["reason"],
                }
                for row in rows
            ]


def _now() -> str:
    return datetime.now(UTC).isoformat()
