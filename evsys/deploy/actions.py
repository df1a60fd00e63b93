"""Deploy a run, stop its deployments; deploy what a config's ``deploy`` section asks for: a
sweep's best arm at the sweep's end, a single run once it completed.

Each step that can fail on bad input (an unknown deployer, bad params, a run without an adapter)
fails before anything is built or started, with a ConfigError; a target that fails raises
BackendError, after removing what it created. A deployment that succeeded is recorded, and so is
one that failed and could not remove all it created (``failed``, with what is left).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evsys.deploy.cleanup import failed_entry
from evsys.deploy.protocol import Deployment, DeploySource
from evsys.deploy.runs import load_source, read_record, record_deployment, update_deployments
from evsys.errors import ConfigError, EvsysError, Problem
from evsys.interrupts import reraise_if_interruption
from evsys.registry import DEPLOYERS
from evsys.run.record import RUN_RESULT

log = logging.getLogger(__name__)

EXIT_DEPLOY_FAILED = 1


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
    return _deploy_and_record(deployer, load_source(run_dir))


def _deploy_and_record(deployer: Any, source: DeploySource) -> dict[str, Any]:
    """The entry of the deployment recorded; a deploy that failed and left something behind
    (its cleanup failed) is recorded too, as ``failed`` with what is left and how to remove it,
    then its error raised."""
    try:
        deployment: Deployment = deployer.deploy(source)
    except Exception as exc:
        left_behind = failed_entry(exc)
        if left_behind is not None:
            record_deployment(source.run_dir, left_behind)
        raise
    return record_deployment(source.run_dir, deployment)


def stop_run(run_dir: str | Path) -> list[dict[str, Any]]:
    """End every running deployment of the run whose deployer can stop it; returns those it
    stopped (already marked ``stopped`` in ``run_result.json``)."""
    path = Path(run_dir).expanduser()
    if str(run_dir).startswith("tinker://"):  # the directory its deploys were recorded in
        from evsys.deploy.tinker_runs import run_dir_for

        path = run_dir_for(str(run_dir))
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
    return _deploy_and_report("the best arm", lambda: deploy_best_arm(summary), summary.best_arm)


def deploy_at_run_end(run_dir: str | Path) -> int:
    """After a single run: deploy it when it completed and its config has a ``deploy`` section,
    and print what happened; returns the run's exit code for it: 0 deployed or nothing to do, 1
    the deploy failed (the run's record stays as it was: completed)."""
    return _deploy_and_report("the run", lambda: deploy_completed_run(run_dir))


def _deploy_and_report(
    what: str, deploy: Callable[[], dict[str, Any] | None], name: str | None = None
) -> int:
    entry, error = attempt_deploy(what, deploy)
    if error is not None:
        print(f"evsys: {error}", file=sys.stderr)
        return EXIT_DEPLOY_FAILED
    if entry is not None:
        print(f"  deployed {f'{name} ' if name else ''}to {describe(entry)}")
    return 0


def attempt_deploy(
    what: str, deploy: Callable[[], dict[str, Any] | None]
) -> tuple[dict[str, Any] | None, str | None]:
    """``(entry, None)`` of a deploy that went through (entry None: nothing to deploy), or
    ``(None, why)``, one line, of one that failed: the runs it would ship are recorded already."""
    try:
        return deploy(), None
    except Exception as exc:
        return None, _why_not_deployed(what, exc)


def _why_not_deployed(what: str, exc: Exception) -> str:
    """One line on a deploy that failed: a run that cannot be shipped (bad input), a target that
    failed, or a deployer of another package that raised something else (named by its type, no
    traceback: the runs it would have shipped are recorded already)."""
    reraise_if_interruption(exc)  # a cancel or a timeout ends the process, not just the deploy
    if isinstance(exc, ConfigError):
        return f"{what} was not deployed: {exc}"
    if isinstance(exc, EvsysError):
        return f"deploying {what} failed: {exc}"
    log.debug("the deployer raised", exc_info=exc)
    return f"deploying {what} failed: {type(exc).__name__}: {exc}"


def describe(entry: dict[str, Any]) -> str:
    """Where a recorded deployment serves the model, in one line."""
    return f"{entry['target']}: {entry['endpoint']} (model {entry['model_id']})"


def deploy_best_arm(summary: Any) -> dict[str, Any] | None:
    """At a sweep's end: deploy its best arm when its config has a ``deploy`` section.

    Returns the recorded entry; None when there is nothing to deploy. A failure raises (an
    EvsysError) for the sweep to report: the arms' results stand either way.
    """
    if not summary.best_arm:
        return None
    return deploy_configured(Path(summary.sweep_dir) / summary.best_arm)


def deploy_completed_run(run_dir: str | Path) -> dict[str, Any] | None:
    """After a single run: deploy it when it completed and its config has a ``deploy`` section.

    Returns the recorded entry; None when there is nothing to deploy (no ``deploy`` section, or
    a run that did not complete: its failure is reported as the run's). A failure raises.
    """
    if read_record(Path(run_dir)).get("status") != "completed":
        return None
    return deploy_configured(run_dir)


def deploy_configured(run_dir: str | Path) -> dict[str, Any] | None:
    """Deploy the run in ``run_dir`` as its recorded config's ``deploy`` section says; returns
    the entry recorded in its ``run_result.json``, None when the config has no such section."""
    run_dir = Path(run_dir)
    spec = ((read_record(run_dir).get("config") or {}).get("deploy")) or None
    if not spec:
        return None
    log.info("deploying %s with %s", run_dir, spec.get("kind"))
    deployer = build_deployer(spec.get("kind", ""), spec.get("params") or {}, path="deploy")
    return _deploy_and_record(deployer, load_source(run_dir))
