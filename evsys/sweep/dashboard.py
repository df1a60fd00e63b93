"""A sweep on the evsys dashboard: one experiment, created before any arm starts.

When the sweep's log store includes the ``dashboard`` store (or ``evsys.Experiment(store=...)``
names a dashboard), the sweeper creates the experiment — name, hypothesis, success metric and
direction, tags, ``project_goal_id``, ``parent_experiment_id`` and the sweep plan — and writes
its client-made id into the sweep directory (:data:`EXPERIMENT_FILE`). Each arm, on whatever
machine it runs, reads that id there and creates its own run in the experiment; ``evsys resume``
finds it too and carries on the same experiment. When the arms are done the sweep records its
best arm, best score and conclusion.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evsys.errors import ConfigError, Problem
from evsys.files import write_json_atomically
from evsys.log_stores.dashboard import (
    EXPERIMENT_FILE,
    MIRROR_DIR,
    DashboardSettings,
    arm_run_id,
    dashboard_settings,
    experiment_fields,
    make_client,
    read_experiment_file,
    settings_of,
)
from evsys.sweep.aggregate import SweepSummary
from evsys.sweep.plan import Arm
from evsys.sweep.rows import INTERRUPTED

log = logging.getLogger(__name__)

START_TIMEOUT_S = 5.0  # the experiment reaches the service before the arms' runs, when it can
CLOSE_TIMEOUT_S = 10.0  # then what is left stays in the mirror, for `evsys sync`


@dataclass
class SweepExperiment:
    """The dashboard experiment of a running sweep."""

    client: Any
    experiment_id: str
    owns_client: bool

    def conclude(
        self,
        summary: SweepSummary,
        sweep_plan: dict[str, Any] | None = None,
        *,
        sweeper_failed: bool = False,
        interrupted: bool = False,
    ) -> None:
        """Best arm, best score, conclusion and status, once every arm has ended; ``sweep_plan``
        replaces the plan the experiment was created with (another sweeper's arms, known only
        once it has proposed them). ``sweeper_failed``: the sweep ended ``failed`` whatever its
        arms did (its sweeper raised); ``interrupted``: it ended ``interrupted`` (Ctrl-C, a
        signal), as its arms that were running did."""
        done = not (sweeper_failed or summary.failed or summary.running or summary.missing)
        plan = {"sweep_plan": _plan_for_dashboard(sweep_plan)} if sweep_plan is not None else {}
        self.client.update_experiment(
            self.experiment_id,
            **plan,
            status=INTERRUPTED if interrupted else "completed" if done else "failed",
            best_run_id=arm_run_id(self.experiment_id, summary.best_arm)
            if summary.best_arm
            else None,
            best_score=summary.best_value,
            conclusion=summary.conclusion or None,
        )
        self.close()

    def end_interrupted(self) -> None:
        """The sweep was stopped (Ctrl-C, a signal) before its end: ``interrupted``, not left
        ``running``. Bookkeeping: a failure is a warning (the sweep's files hold it all)."""
        try:
            self.client.update_experiment(self.experiment_id, status=INTERRUPTED)
        except Exception as exc:
            log.warning("recording the sweep's interruption on the dashboard failed: %s", exc)
        self.close()

    def close(self) -> None:
        if not self.owns_client:
            return
        from evsys.tracking.errors import DashboardClientError

        try:
            if not self.client.close(timeout=CLOSE_TIMEOUT_S):
                log.warning("not every write reached the dashboard: `evsys sync` the sweep dir")
        except DashboardClientError as exc:  # the sweep's own files hold it all
            log.warning("the dashboard refused a write of the sweep: %s", exc)


def open_sweep_experiment(
    sweep_dir: Path, arms: list[Arm], plan: dict[str, Any], store: Any = None
) -> SweepExperiment | None:
    """The sweep's experiment: created now (or, resuming, the one the sweep directory names).
    None when neither the arms' log store nor ``store`` names a dashboard.

    ``store``: a DashboardClient, or the settings of one (``evsys.Experiment(store=...)``).
    Raises the client's DashboardClientError (EvsysAuthError: a rejected key) before any arm.
    """
    config = arms[0].config if arms else None
    settings = dashboard_settings(config.log_store) if config is not None else None
    if store is None and settings is None:
        return None
    if store is not None and not isinstance(store, DashboardSettings | Mapping):
        client, owns = store, False
    else:
        chosen = settings_of(store) if store is not None else settings
        assert chosen is not None
        client, owns = make_client(chosen, sweep_dir / MIRROR_DIR), True

    recorded = read_experiment_file(sweep_dir)
    if recorded is not None:  # resumed: the same experiment goes on
        experiment_id = str(recorded["experiment_id"])
        client.update_experiment(experiment_id, status="running")
    else:
        experiment_id = uuid.uuid4().hex
        fields = experiment_fields(config) if config is not None else {}
        client.create_experiment(
            plan.get("name") or sweep_dir.name,
            id=experiment_id,
            sweep_plan=_plan_for_dashboard(plan),
            **fields,
        )
        client.update_experiment(experiment_id, status="running")
        # The arms read the id from here: written only once the create is in the mirror.
        write_json_atomically(
            sweep_dir / EXPERIMENT_FILE,
            {"experiment_id": experiment_id, "created_at": datetime.now(UTC).isoformat()},
        )
    # Arms on other machines create their runs in it: let the experiment reach the service first.
    from evsys.tracking.errors import DashboardClientError

    try:
        client.flush(timeout=START_TIMEOUT_S)
    except DashboardClientError as exc:
        raise ConfigError(
            Problem(path="metadata", message=f"the dashboard refused the sweep's experiment: {exc}")
        ) from None
    return SweepExperiment(client, experiment_id, owns)


def _plan_for_dashboard(plan: dict[str, Any]) -> dict[str, Any]:
    """The sweep plan without each arm's whole config (each run carries its own)."""
    arms = [{k: v for k, v in arm.items() if k != "config"} for arm in plan.get("arms", [])]
    return {**plan, "arms": arms}
