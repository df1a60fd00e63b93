"""An evolve sweep on the dashboard: one experiment, and one generation record per generation.

When the arms' log store includes the ``dashboard`` store, the loop opens the sweep's experiment
exactly as evsys's own sweeper does (:func:`evsys.sweep.dashboard.open_sweep_experiment`: created
before any arm, its id in the sweep directory, where each arm finds it and creates its run). Each
generation is then a ``generation`` of that experiment: created when it starts, updated with its
arms' states, its parent runs, each arm's lineage (generation, parents, mutation, delta against
each parent) and the best run so far when it ends. Generation ids derive from the
experiment and the generation's index, so a resumed sweep updates the records it created.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from pathlib import Path
from typing import Any

from evsys.log_stores.dashboard import arm_run_id
from evsys.sweep.dashboard import SweepExperiment

log = logging.getLogger(__name__)
_IDS = uuid.UUID("0b7d6a52-3f51-4c8e-9d0e-6a1f2c9e4b17")  # namespace of the generation ids


class DashboardGenerations:
    """The loop's tracker (``create_generation`` / ``update_generation``) on the dashboard."""

    def __init__(self, experiment: SweepExperiment, proposer: str):
        self.experiment, self.proposer = experiment, proposer

    @property
    def client(self) -> Any:
        return self.experiment.client

    def generation_id(self, generation: int) -> str:
        return uuid.uuid5(_IDS, f"{self.experiment.experiment_id}/{generation}").hex

    def create_generation(self, *, sweep_dir: str, generation: int) -> None:
        self.client.create_generation(
            self.experiment.experiment_id,
            generation,
            proposer=self.proposer,
            id=self.generation_id(generation),
            status="running",
        )

    def update_generation(
        self,
        *,
        sweep_dir: str,
        generation: int,
        arms: dict[str, str],
        best: list[str],
        parents: list[str] | None = None,
        lineage: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        experiment_id = self.experiment.experiment_id
        run = {name: arm_run_id(experiment_id, name) for name in lineage or {}}
        self.client.update_generation(
            self.generation_id(generation),
            status="completed",
            best_run_id=arm_run_id(experiment_id, best[0]) if best else None,
            summary={
                "arms": {arm_run_id(experiment_id, name): state for name, state in arms.items()},
                "parent_runs": [arm_run_id(experiment_id, name) for name in parents or []],
                # each arm's generation, parents, mutation and delta against each parent
                "lineage": {run[name]: entry for name, entry in (lineage or {}).items()},
            },
        )


def load_tracker(spec: str | None, sweep_dir: Path) -> Any:
    """The generation tracker ``module:factory(sweep_dir=…)`` builds (the dashboard's), or None.

    Its optional methods, called with keywords: ``create_generation(sweep_dir, generation)``
    when a generation starts, ``update_generation(sweep_dir, generation, arms={name: state},
    best=[name], parents=[name], lineage={name: {generation, parent_arms, mutation, deltas, …}})``
    when it ended. A tracker that fails is logged, never the loop's end."""
    if not spec:
        return None
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute or "tracker")
        return factory(sweep_dir=str(sweep_dir))
    except Exception as exc:
        log.warning("evolve: no tracker (%s): %s", spec, exc)
        return None
