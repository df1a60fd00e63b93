"""Reading the run a deployment ships, and recording deployments in its ``run_result.json``.

Deployments are an additive ``deployments`` list in the record, rewritten atomically under a lock
file, so that two deploys of one run (a sweep's and a person's) never lose each other's entry.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evsys.deploy.protocol import Deployment, DeploySource
from evsys.errors import ConfigError, Problem
from evsys.files import write_json_atomically
from evsys.run.record import RUN_RESULT, redact

DEPLOYMENTS = "deployments"
_LOCK = ".deployments.lock"


def load_source(run_dir: str | Path) -> DeploySource:
    """What the completed run in ``run_dir`` trained; a ConfigError says why it cannot be
    deployed (no such run, not completed, no final checkpoint). ``run_dir`` may be a
    ``tinker://`` checkpoint instead (evsys.deploy.tinker_runs)."""
    given = str(run_dir)
    if given.startswith("tinker://"):  # a checkpoint on its own: it gets a directory here
        from evsys.deploy.tinker_runs import checkpoint_run_dir

        run_dir = checkpoint_run_dir(given)
    run_dir = Path(run_dir).expanduser()
    if run_dir.name == RUN_RESULT:
        run_dir = run_dir.parent
    record = read_record(run_dir, given)
    if record.get("finished") is not True or record.get("status") != "completed":
        state = "still running" if record.get("finished") is False else record.get("status")
        raise _bad(given, f"the run did not complete ({state}): only a completed run is deployed")
    config = record.get("config") or {}
    base_model = (config.get("model") or {}).get("name")
    backend = (config.get("backend") or {}).get("kind", "?")
    backend_params = (config.get("backend") or {}).get("params") or {}
    checkpoint = (record.get("artifacts") or {}).get("final_checkpoint")
    if not checkpoint or not base_model:
        raise _bad(given, "the run recorded no final checkpoint (artifacts.final_checkpoint)")
    checkpoint = str(checkpoint)
    if "://" not in checkpoint:
        path = Path(checkpoint)
        if not path.is_absolute():
            path = run_dir / path
        moved = run_dir / "checkpoints" / "final"
        if not path.exists() and moved.exists():  # a run directory copied to another place
            path = moved
        if not path.exists():
            raise _bad(given, f"its final checkpoint {checkpoint} no longer exists")
        checkpoint = str(path.resolve())
    return DeploySource(
        run_dir=run_dir.resolve(),
        run_id=str(record.get("run_id") or run_dir.name),
        checkpoint=checkpoint,
        base_model=str(base_model),
        backend=str(backend),
        backend_params=dict(backend_params) if isinstance(backend_params, dict) else {},
    )


def read_record(run_dir: Path, given: str | None = None) -> dict[str, Any]:
    """The run's ``run_result.json``; a ConfigError when ``run_dir`` is not a run directory."""
    given = given or str(run_dir)
    if not run_dir.is_dir():
        raise _bad(given, "no such run directory")
    try:
        record = json.loads((run_dir / RUN_RESULT).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _bad(given, f"not a run directory: it has no {RUN_RESULT}") from None
    except (OSError, ValueError) as exc:
        raise _bad(given, f"its {RUN_RESULT} cannot be read: {exc}") from None
    if not isinstance(record, dict):
        raise _bad(given, f"its {RUN_RESULT} is not a JSON object")
    return record


def record_deployment(run_dir: Path, deployment: Deployment) -> dict[str, Any]:
    """Append ``deployment`` to the run's ``deployments``; returns the entry as written."""
    entry = redact(deployment.to_dict())
    update_deployments(run_dir, lambda entries: [*entries, entry])
    return entry


def update_deployments(
    run_dir: Path, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Rewrite the run's ``deployments`` with ``change(current)``, atomically and under a lock."""
    with _locked(run_dir):
        record = read_record(run_dir)
        entries = change(list(record.get(DEPLOYMENTS) or []))
        record[DEPLOYMENTS] = [redact(e) for e in entries]
        write_json_atomically(run_dir / RUN_RESULT, record)
    return record[DEPLOYMENTS]


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    with open(run_dir / _LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _bad(run_dir: str, message: str) -> ConfigError:
    return ConfigError(Problem(path="run_dir", message=message, value=run_dir))
