"""``dashboard`` log store: the run on the evsys dashboard, through a local mirror.

Every write goes first to the mirror (append-only files in ``<run dir>/dashboard/``), then a
background thread sends it (:class:`evsys.tracking.DashboardClient`): training never waits on the
network, and ``evsys sync <dir>`` replays what a dead service missed. Use it alone
(``log_store=dashboard``) or beside the files (``log_store=jsonl_dashboard``).

What goes where:

- step metrics (``log_metrics``) → the run's steps;
- when the arm starts (:meth:`DashboardLogStore.start_run`, called by the runner): the run, with
  its resolved config, hash, overrides, run group, seed, git state and data lineage; a single
  run first creates its own experiment;
- when it ends (:meth:`DashboardLogStore.finish_run`): status, error and summary metrics, the
  eval (and baseline) scores as eval runs, each test benchmark's scores, and the predictions.

A sweep's arms join the experiment their sweep created: its id is in the sweep directory
(:data:`EXPERIMENT_FILE`), and each arm's run id is derived from it and the arm's name, so a
resumed or requeued arm appends to the same run. The key is read from the environment variable
``api_key_env`` names, never from the config, and is written nowhere.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from evsys.config import Strict
from evsys.errors import ConfigError, Problem
from evsys.log_stores._common import as_float, resolve_log_dir
from evsys.registry import register_log_store

log = logging.getLogger(__name__)

EXPERIMENT_FILE = "dashboard_experiment.json"
"""In a sweep directory: the dashboard experiment its arms belong to (``experiment_id``)."""
MIRROR_DIR = "dashboard"
_IDS = uuid.UUID("5f0c2b1e-7d1a-4c39-9a53-2f3c8e6b1d40")  # namespace of the derived ids


DEFAULT_KEY_ENV = "EVSYS_API_KEY"


def offline() -> bool:
    """``EVSYS_OFFLINE``: mirror only, no service, no key."""
    return os.environ.get("EVSYS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


class DashboardSettings(Strict):
    """Which dashboard to write to; the key comes from the environment only."""

    api_url: str | None = Field(
        None, description="The service's base URL. None: EVSYS_API_URL, else localhost:8000."
    )
    project_id: str | None = Field(
        None,
        description="The project the key must belong to (checked at start). None: "
        "EVSYS_PROJECT_ID, else the key's own project.",
    )
    api_key_env: str = Field(
        DEFAULT_KEY_ENV,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The environment variable holding the API key. The key itself never goes "
        "in a config, and is written to no output.",
    )


def make_client(settings: DashboardSettings, log_dir: Path) -> Any:
    """A DashboardClient for ``settings`` with its mirror in ``log_dir``. A key the service
    rejects (or a project it does not belong to) is a ConfigError now, unless EVSYS_OFFLINE."""
    from evsys.tracking.client import DashboardClient
    from evsys.tracking.errors import DashboardClientError

    options: dict[str, Any] = {"log_dir": str(log_dir)}
    if settings.api_url is not None:
        options["api_url"] = settings.api_url
    if settings.project_id is not None:
        options["project_id"] = settings.project_id
    key = os.environ.get(settings.api_key_env)
    if key:
        options["api_key"] = key
    elif settings.api_key_env != DEFAULT_KEY_ENV and not offline():
        # The client would fall back to $EVSYS_API_KEY: the key comes from the variable named.
        raise ConfigError(
            Problem(
                path="log_store.params.api_key_env",
                message=f"${settings.api_key_env} is not set",
                value=settings.api_key_env,
                expected="the variable holding the dashboard key (or EVSYS_OFFLINE=1)",
            )
        )
    try:
        return DashboardClient(**options)
    except DashboardClientError as exc:
        where = settings.api_url or os.environ.get("EVSYS_API_URL") or "EVSYS_API_URL's default"
        raise ConfigError(
            Problem(
                path="log_store",
                message=f"the dashboard ({where}) refused the key in ${settings.api_key_env}: "
                f"{exc}",
                expected="a key of the project (`evsys dashboard create-key --project P`)",
            )
        ) from None


def settings_of(store: Any) -> DashboardSettings:
    """``Experiment(store=...)``'s settings (a DashboardSettings or a mapping) as a
    DashboardSettings; bad ones are a ConfigError naming each field."""
    if isinstance(store, DashboardSettings):
        return store
    from pydantic import ValidationError

    from evsys.validation import problems_from_validation_error

    try:
        return DashboardSettings(**dict(store))
    except ValidationError as exc:
        problems = problems_from_validation_error(exc, DashboardSettings, ("store",))
        raise ConfigError(problems, header="evsys.Experiment(store=...):") from None


def check_key(log_store: Any) -> None:
    """Pre-flight of a run whose log store includes the dashboard: a key the service rejects
    (or none) is a ConfigError now, before anything is written. A service that does not answer
    passes: the run's writes wait in its mirror."""
    settings = dashboard_settings(log_store)
    if settings is None or offline():
        return
    from evsys.data.references import quiet_start

    with tempfile.TemporaryDirectory(prefix="evsys-key-check-") as mirror, quiet_start():
        make_client(settings, Path(mirror)).close()


def dashboard_settings(log_store: Any) -> DashboardSettings | None:
    """The settings of the ``dashboard`` store in a config's ``log_store`` block (itself, or a
    child of ``multiplex``), or None when it has none."""
    kind, params = _kind_and_params(log_store)
    if kind == "dashboard":
        store = DashboardLogStore.Config(**params)
        return DashboardSettings(**store.model_dump(include=set(DashboardSettings.model_fields)))
    if kind == "multiplex":
        for child in params.get("stores") or []:
            found = dashboard_settings(child)
            if found is not None:
                return found
    return None


def find_dashboard_store(store: Any) -> DashboardLogStore | None:
    """The dashboard store among a built log store and its multiplexed children."""
    if isinstance(store, DashboardLogStore):
        return store
    for child in getattr(store, "stores", None) or []:
        found = find_dashboard_store(child)
        if found is not None:
            return found
    return None


def read_experiment_file(sweep_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((Path(sweep_dir) / EXPERIMENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("experiment_id") else None


def arm_run_id(experiment_id: str, arm_name: str) -> str:
    """The dashboard id of a sweep arm's run: the same on every attempt of the arm."""
    return uuid.uuid5(_IDS, f"run/{experiment_id}/{arm_name}").hex


@register_log_store("dashboard")
class DashboardLogStore:
    """Sends the run to the evsys dashboard (``evsys dashboard serve``) through a local mirror."""

    class Config(DashboardSettings):
        log_dir: str | None = Field(
            None,
            description="Directory of the local mirror (append-only *.writes.jsonl, replayed "
            "by `evsys sync`). None: <run directory>/dashboard.",
        )
        close_timeout_s: float = Field(
            10.0,
            ge=0,
            description="How long the end of a run waits for writes not yet sent to a service "
            "that answers (one that is down, or hangs from the start, costs under a second); "
            "what is left stays in the mirror, for `evsys sync`.",
        )

    def __init__(self, *, run_dir: Path | None = None, **params: Any):
        self.cfg = self.Config(**params)
        mirror = resolve_log_dir(
            self.cfg.log_dir, run_dir, kind="dashboard", default_subdir=MIRROR_DIR
        )
        self._start(make_client(self.cfg, mirror), run_dir, owns_client=True)

    @classmethod
    def for_arm(cls, store: Any, run_dir: Path) -> DashboardLogStore:
        """The store of an arm run by ``evsys.Experiment(store=...)``: ``store`` is a
        DashboardClient (shared, its mirror where its owner put it) or the settings of one
        (a DashboardSettings or a mapping; a client per arm, its mirror in the arm directory)."""
        self = cls.__new__(cls)
        if isinstance(store, DashboardSettings | Mapping):
            self.cfg = cls.Config(**settings_of(store).model_dump())
            client = make_client(
                self.cfg,
                resolve_log_dir(None, run_dir, kind="dashboard", default_subdir=MIRROR_DIR),
            )
            self._start(client, run_dir, owns_client=True)
        else:
            self.cfg = cls.Config()
            self._start(store, run_dir, owns_client=False)
        return self

    def _start(self, client: Any, run_dir: Path | None, *, owns_client: bool) -> None:
        self.client = client
        self.owns_client = owns_client
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.experiment_id, self.run_id, self.in_sweep = _identity(self.run_dir)

    # -- the LogStore protocol ---------------------------------------------------------------

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.log_metrics({name: value}, step)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        # The hot path: plain floats and ints go as they are; numpy or torch scalars become floats.
        for value in metrics.values():  # (a plain loop: cheaper than all() over a generator)
            if type(value) is not float and type(value) is not int:
                metrics = {name: as_float(name, value) for name, value in metrics.items()}
                break
        self.client.log_step_metric(self.run_id, step if type(step) is int else int(step), metrics)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        """Nothing to send: the run carries its whole resolved config from the start."""

    def log_artifact(self, name: str, path: str) -> None:
        """Artifacts stay in the run directory; the dashboard records metrics, not files."""

    def close(self) -> None:
        if self.owns_client:  # what is not sent by then stays in the mirror, for `evsys sync`
            self.client.close(timeout=self.cfg.close_timeout_s)

    # -- the run around the metrics ------------------------------------------------------------

    def start_run(
        self,
        config: Any,
        *,
        overrides: list[str],
        data_lineage: list[dict[str, Any]],
    ) -> None:
        """Create the run (and, outside a sweep, its experiment) before anything is logged."""
        from evsys.run.record import config_hash, git_state, group_id, redact, redact_override

        safe = redact(config.model_dump(mode="json"))
        if not self.in_sweep:
            self.client.create_experiment(
                config.name, id=self.experiment_id, **experiment_fields(config)
            )
        git = git_state()
        self.client.create_run(
            self.experiment_id,
            self.run_dir.name if self.in_sweep and self.run_dir else config.name,
            config=safe,
            config_hash=config_hash(safe),
            overrides=[redact_override(line) for line in overrides],
            group_id=group_id(safe),
            seed=config.seed,
            git={k: v for k, v in git.items() if not k.startswith("_")} if git else None,
            data_lineage=data_lineage,
            id=self.run_id,
        )
        self.client.update_run(self.run_id, status="running")

    def finish_run(self, config: Any, result: Any) -> None:
        """Record how the run ended: status, error, summary, eval runs, benchmarks, predictions."""
        from evsys.log_stores.dashboard_results import send_results

        send_results(self, config, result)


def experiment_fields(config: Any) -> dict[str, Any]:
    """The fields of ``experiment.create`` an ExperimentConfig gives."""
    metadata = config.metadata
    success = metadata.success_metric
    return {
        "hypothesis": metadata.hypothesis or None,
        "success_metric": success.name if success else None,
        "direction": "minimize" if success and success.direction == "min" else "maximize",
        "tags": list(dict.fromkeys([*metadata.tags, *config.tags])),
        "project_goal_id": metadata.project_goal_id,
        "parent_experiment_id": config.parent_experiment_id,
    }


def _identity(run_dir: Path | None) -> tuple[str, str, bool]:
    """``(experiment id, run id, in a sweep)``: a sweep arm joins its sweep's experiment; a
    single run is an experiment of its own. Both ids derive from what is on disk, so every
    process of the arm (data-parallel ranks too) writes to the same run."""
    if run_dir is not None:
        sweep = read_experiment_file(run_dir.parent)
        if sweep is not None:
            experiment_id = str(sweep["experiment_id"])
            return experiment_id, arm_run_id(experiment_id, run_dir.name), True
        try:
            from evsys.run.record import RUN_RESULT

            evsys_run_id = json.loads((run_dir / RUN_RESULT).read_text(encoding="utf-8"))["run_id"]
        except (OSError, ValueError, KeyError, TypeError):
            evsys_run_id = None
        if evsys_run_id:
            return (
                uuid.uuid5(_IDS, f"experiment/{evsys_run_id}").hex,
                uuid.uuid5(_IDS, f"run/{evsys_run_id}").hex,
                False,
            )
    return uuid.uuid4().hex, uuid.uuid4().hex, False


def _kind_and_params(spec: Any) -> tuple[str | None, dict[str, Any]]:
    if isinstance(spec, Mapping):
        return spec.get("kind"), dict(spec.get("params") or {})
    return getattr(spec, "kind", None), dict(getattr(spec, "params", None) or {})
