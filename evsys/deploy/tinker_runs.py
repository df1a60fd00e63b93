"""``evsys deploy tinker://<run>/weights/<name> --to …``: a checkpoint with no run directory here.

It gets a directory of its own, ``outputs/deploys/tinker-<digest of the path>/`` under the current
directory, holding a ``run_result.json`` that records the checkpoint, the base model the Tinker
service says it was trained on (``RestClient.get_training_run_by_tinker_path``) and the service's
URL. From there it is deployed like a run: the adapter lands in its ``deploy/``, deployments are
recorded in its record, and ``evsys deploy --stop <that directory>`` ends a local server. The
directory's name is a digest, never the path's or the service's text; the base model's name is
checked to be a model id (``org/name``) before it is used.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evsys.deploy.tinker_download import check_downloadable
from evsys.errors import BackendError
from evsys.files import write_json_atomically
from evsys.run.record import RUN_RESULT

DEPLOYS_DIR = Path("outputs") / "deploys"
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


def run_dir_for(checkpoint: str) -> Path:
    """Where ``evsys deploy <checkpoint>`` keeps the checkpoint's record and deployments."""
    return DEPLOYS_DIR / f"tinker-{hashlib.sha256(checkpoint.encode()).hexdigest()[:16]}"


def checkpoint_run_dir(checkpoint: str) -> Path:
    """The checkpoint's directory, with its record (written on first use)."""
    check_downloadable(checkpoint)
    run_dir = run_dir_for(checkpoint)
    if (run_dir / RUN_RESULT).is_file():
        return run_dir  # deployed before: its record keeps those deployments
    base_model, base_url = _training_run(checkpoint)
    run_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat()
    record: dict[str, Any] = {
        "schema_version": 1,
        "run_id": run_dir.name,
        "name": run_dir.name,
        "status": "completed",
        "finished": True,
        "started_at": now,
        "finished_at": now,
        "metrics": {},
        "artifacts": {"final_checkpoint": checkpoint},
        "config": {
            "model": {"name": base_model},
            "backend": {"kind": "tinker", "params": {"base_url": base_url}},
        },
    }
    write_json_atomically(run_dir / RUN_RESULT, record)
    return run_dir


def checked_model_id(name: Any) -> str:
    """``name`` when it is a model id (``org/name`` or ``name``); else a BackendError."""
    if not isinstance(name, str) or not _MODEL_ID.fullmatch(name) or ".." in name:
        raise BackendError(
            f"the Tinker service named the base model {str(name)[:100]!r}, which is not a "
            "model id (org/name): refused"
        )
    return name


def _training_run(checkpoint: str) -> tuple[str, str]:
    """(base model, service URL) of the training run that saved ``checkpoint``."""
    from evsys.backends.tinker.connection import ConnectionParams, connect, sdk_errors, wait

    params = ConnectionParams()  # $TINKER_BASE_URL (else the hosted service), $TINKER_API_KEY
    service = connect(params)
    try:
        with sdk_errors(f"looking up the training run of {checkpoint}", params):
            run = wait(service.rest.get_training_run_by_tinker_path(checkpoint), params, "it")
        return checked_model_id(run.base_model), service.url
    finally:
        with suppress(Exception):  # the lookup's outcome stands either way
            service.client.close("success").result(timeout=params.connect_timeout_s)
