"""Deploy a run, stop its deployments, deploy a sweep's best arm.

Each step that can fail on bad input (an unknown deployer, bad params, a run without an adapter)
fails before anything is built or started, with a ConfigError; a target that fails raises
BackendError. Only a deployment that succeeded is recorded.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evsys.deploy.protocol import Deployment
from evsys.deploy.runs import load_source, read_record, record_deployment, update_deployments
from evsys.errors import ConfigError, EvsysError, Problem
from evsys.registry import DEPLOYERS
from evsys.run.record import RUN_RESULT

log = logging.getLogger(__name__)


def build_deployer(kind: str, params: dict[str, Any] | None = None, *, path: str = "") -> Any:
    """The deployer ``kind`` with its ``params`` validated; one ConfigError lists every problem."""
    from evsys.validation import problems_from_validation_error

    where = f"{path}." if path else ""
    cls = DEPLOYERS.get(kind) if kind in DEPLOYERS else None
    if cls is None:
        raise DEPLOYERS.unknown(kind, path=f"{where}kind" if path else "--to")
    config = getattr(cls, "Config", None)
    if config is not None:
        try:
            config.model_validate(params or {})
        except ValidationError as exc:
            prefix = (*path.split("."), "params") if path else ()
            problems = problems_from_validation_error(exc, config, prefix=prefix)
            raise ConfigError(problems, header=f"bad params for deployer '{kind}':") from None
    elif params:
        raise ConfigError(
            [Problem(path=key, message=f"deployer '{kind}' takes no params") for key in params]
        )
    return cls(**(params or {}))


def deploy_run(run_dir: str | Path, kind: str, params: dict[str, Any] | None = None) -> dict:
    """Deploy the adapter of the run in ``run_dir`` with deployer ``kind``; returns the entry
    recorded in its ``run_result.json``."""
    deployer = build_deployer(kind, params)
    source = load_source(run_dir)
    deployment: Deployment = deployer.deploy(source)
    return record_deployment(source.run_dir, deployment)


def stop_run(run_dir: str | Path) -> list[dict[str, Any]]:
    """End every running deployment of the run whose deployer can stop it; returns those it
    stopped (already marked ``stopped`` in ``run_result.json``)."""
    path = Path(run_dir).expanduser()
    if path.name == RUN_RESULT:
        path = path.parent
    record = read_record(path, str(run_dir))
    stopped: list[dict[str, Any]] = []
    for index, entry in enumerate(record.get("deployments") or []):
        if entry.get("status") != "running":
            continue
        cls = DEPLOYERS.get(entry["target"]) if entry.get("target") in DEPLOYERS else None
        if cls is None or not hasattr(cls, "stop"):
            continue
        outcome = cls.stop(entry)
        stopped.append({**entry, **outcome})

        def mark(entries: list[dict], index: int = index, outcome: dict = outcome) -> list[dict]:
            entries[index] = {**entries[index], **outcome}
            return entries

        update_deployments(path, mark)
    return stopped


def deploy_at_sweep_end(summary: Any) -> int:
    """Deploy the sweep's best arm when its config asks to, and print what happened; returns the
    sweep's exit code for it: 0 deployed or nothing to do, 1 the deploy failed (the arms'
    results stand, recorded as they were)."""
    try:
        entry = deploy_best_arm(summary)
    except ConfigError as exc:
        print(f"evsys: the best arm was not deployed: {exc}", file=sys.stderr)
        return 1
    except EvsysError as exc:
        print(f"evsys: deploying the best arm failed: {exc}", file=sys.stderr)
        return 1
    if entry is not None:
        print(
            f"  deployed {summary.best_arm} to {entry['target']}: {entry['endpoint']} "
            f"(model {entry['model_id']})"
        )
    return 0


def deploy_best_arm(summary: Any) -> dict[str, Any] | None:
    """At a sweep's end: deploy its best arm when its config has a ``deploy`` section.

    Returns the recorded entry; None when there is nothing to deploy. A failure raises (an
    EvsysError) for the sweep to report: the arms' results stand either way.
    """
    if not summary.best_arm:
        return None
    arm_dir = Path(summary.sweep_dir) / summary.best_arm
    spec = ((read_record(arm_dir).get("config") or {}).get("deploy")) or None
    if not spec:
        return None
    log.info("deploying the best arm %s with %s", summary.best_arm, spec.get("kind"))
    deployer = build_deployer(spec.get("kind", ""), spec.get("params") or {}, path="deploy")
    source = load_source(arm_dir)
    return record_deployment(source.run_dir, deployer.deploy(source))
