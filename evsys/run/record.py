"""``run_result.json``: the one file that says what a run was and how it ended.

It is written atomically (a temporary file, then a rename) so a reader — a person, an agent, a
sweep resuming on another machine — never sees half of it, and it carries everything needed to
reproduce the run: the resolved config and its hash, the overrides, package versions, git state.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
import uuid
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from evsys.files import write_json_atomically
from evsys.protocols import RunResult

RUN_RESULT = "run_result.json"
SCHEMA_VERSION = 1
_TRACKED_PACKAGES = (
    "evsys", "hydra-core", "omegaconf", "pydantic", "torch", "transformers", "trl", "peft",
    "accelerate", "datasets", "tinker", "submitit",
)  # fmt: skip
# Key names whose values are secrets: api_key, TINKER_API_KEY, hf_token, client_secret, password…
# Anchored at the end so that max_tokens or secret_santa_count stay visible.
_SECRET_KEY = re.compile(
    r"(^|[._-])(api[_-]?key|token|secret|password|passwd|credentials?|auth)$", re.IGNORECASE
)
REDACTED = "<redacted>"


def new_run_id(name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{uuid.uuid4().hex[:6]}"


def config_hash(config: dict[str, Any]) -> str:
    """Hash of the resolved config: equal configs give equal hashes, whatever the key order."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def is_secret_key(name: str) -> bool:
    """Whether a key (or a dotted path ending in one) names a secret."""
    return bool(_SECRET_KEY.search(str(name)))


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if _SECRET_KEY.search(str(k)) and v else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redact_override(line: str) -> str:
    """``backend.params.api_key=tml-…`` → ``backend.params.api_key=<redacted>``."""
    key, sep, value = line.partition("=")
    return f"{key}{sep}{REDACTED}" if sep and value and _SECRET_KEY.search(key) else line


@cache  # one process runs many arms of a sweep: look once
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


@cache
def git_state(cwd: Path | None = None) -> dict[str, Any] | None:
    """Commit and dirtiness of the git work tree the run started in, or None outside one."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def write_run_result(
    run_dir: Path,
    result: RunResult,
    *,
    name: str,
    config: dict[str, Any],
    overrides: list[str],
    started_at: datetime,
    traceback: str | None = None,
    error_type: str | None = None,
) -> dict[str, Any]:
    finished_at = datetime.now(UTC)
    safe_config = redact(config)
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": result.run_id,
        "name": name,
        "status": result.status,
        # An explicit marker, so a resumed sweep never mistakes a half-finished run for a done one.
        "finished": True,
        "metrics": result.metrics,
        "artifacts": result.artifacts,
        "error": result.error,
        "error_type": error_type,
        "traceback": traceback,
        "extras": result.extras,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "duration_s": round((finished_at - started_at).total_seconds(), 3),
        "run_dir": str(run_dir),
        "config": safe_config,
        "config_hash": config_hash(safe_config),
        "overrides": [redact_override(o) for o in overrides],
        "versions": package_versions(),
        "git": git_state(),
        "host": platform.node(),
    }
    write_json_atomically(run_dir / RUN_RESULT, record)
    return record
