"""``run_result.json``: the one file that says what a run was and how it ended.

It is written atomically (a temporary file, then a rename) so a reader — a person, an agent, a
sweep resuming on another machine — never sees half of it, and it carries everything needed to
reproduce the run: the resolved config and its hash, the overrides, package versions, git state.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from evsys.files import write_bytes_atomically, write_json_atomically
from evsys.protocols import RunResult

# Redaction lived here first; its names stay importable from this module.
from evsys.redaction import REDACTED as REDACTED
from evsys.redaction import is_secret_key as is_secret_key
from evsys.redaction import redact as redact
from evsys.redaction import redact_override as redact_override

RUN_RESULT = "run_result.json"
SCHEMA_VERSION = 1
SEED = "seed"
"""The config key that tells a run from its reruns: a run group is its arms equal but for it."""
_TRACKED_PACKAGES = (
    "evsys", "hydra-core", "omegaconf", "pydantic", "torch", "transformers", "trl", "peft",
    "accelerate", "datasets", "tinker", "submitit",
)  # fmt: skip

GIT_DIFF = "git_diff.patch"
"""Beside run_result.json when the run started from a work tree with uncommitted changes."""
GIT_TIMEOUT_S = 10
MAX_PATCH_BYTES = 10 * 2**20
MAX_UNTRACKED_LISTED = 200
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""git's empty tree: what a repository without commits is diffed against."""


def new_run_id(name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{uuid.uuid4().hex[:6]}"


def config_hash(config: dict[str, Any]) -> str:
    """Hash of the resolved config: equal configs give equal hashes, whatever the key order."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def group_id(config: dict[str, Any]) -> str:
    """The run group of an arm: arms whose resolved configs are equal but for ``seed`` share it.

    A 16-hex hash (:func:`config_hash`, canonical JSON with sorted keys) of the
    resolved config without its top-level ``seed``; every other key, ``name`` included, counts.
    The config is redacted first, as ``run_result.json`` records it, so the id is the same whether
    computed from the config in memory (the sweeper) or from the recorded one (the aggregate).
    """
    return config_hash(redact({k: v for k, v in config.items() if k != SEED}))


@cache  # one process runs many arms of a sweep: look once
def package_versions() -> dict[str, str]:
    """The versions of Python and of the packages a run's results depend on.

    Reading them from the distributions' metadata costs ≈ 15 ms a process (every run, every
    worker of a sweep); they change only when a distribution does, so they are kept on disk,
    keyed like the entry points by the installed distributions (see :mod:`evsys.entry_points`).
    """
    from evsys.entry_points import install_key, installed_distributions
    from evsys.paths import cache_dir

    parts = [sys.version, *_TRACKED_PACKAGES, *installed_distributions()]
    stamp = hashlib.sha1("\n".join(parts).encode()).hexdigest()
    path = cache_dir() / f"package-versions-{install_key()}.json"
    try:
        cached = json.loads(path.read_text())
        if cached["stamp"] == stamp and isinstance(cached["versions"], dict):
            return cached["versions"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    versions = _read_package_versions()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, json.dumps({"stamp": stamp, "versions": versions}).encode())
    except OSError:
        pass  # a read-only home only costs speed
    return versions


def _read_package_versions() -> dict[str, str]:
    # Imported here: importlib.metadata costs ≈ 10 ms, and `evsys validate` and `plan` import
    # this module (through evsys.sweep.plan) without ever recording a run.
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def git_state(cwd: Path | None = None) -> dict[str, Any] | None:
    """The git work tree the process runs in (or ``cwd``): commit, whether tracked files changed,
    untracked files, and the uncommitted changes as a patch. None outside a work tree or without
    git. Looked up once per directory and process: a sweep's arms all ran the same code."""
    try:
        where = Path(cwd or Path.cwd()).resolve()
    except OSError:  # the working directory was removed
        return None
    return _git_state(where)


@cache
def _git_state(cwd: Path) -> dict[str, Any] | None:
    import subprocess  # only when a run is recorded, not when a sweep is planned

    # GIT_OPTIONAL_LOCKS=0: never take the index lock, so a run cannot break the user's own git.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str, where: Path = cwd) -> bytes:
        return subprocess.run(
            ["git", *args], cwd=where, env=env, capture_output=True, check=True,
            timeout=GIT_TIMEOUT_S,
        ).stdout  # fmt: skip

    try:
        top = Path(git("rev-parse", "--show-toplevel").decode().strip())
    except (OSError, subprocess.SubprocessError, UnicodeDecodeError):
        return None  # no git, or not inside a work tree
    try:
        commit = git("rev-parse", "--verify", "--quiet", "HEAD").decode().strip() or None
    except subprocess.CalledProcessError:
        commit = None  # a repository without commits yet
    try:
        # Staged and unstaged changes of the whole work tree against HEAD (the empty tree before
        # the first commit), as bytes: --binary and no decoding, so `git apply` restores them all.
        diff = ("diff", commit or EMPTY_TREE, "--binary", "--no-color", "--no-ext-diff")
        patch = git(*diff, where=top)
        listed = git("ls-files", "--others", "--exclude-standard", "-z", where=top)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"commit": commit, "dirty": None, "error": f"{type(exc).__name__}: {exc}"}
    untracked = [p for p in listed.decode(errors="replace").split("\0") if p]
    return {
        "commit": commit,
        "dirty": bool(patch),
        "untracked": untracked[:MAX_UNTRACKED_LISTED],
        "n_untracked": len(untracked),
        "_patch": patch,
    }


def record_git_state(run_dir: Path) -> dict[str, Any] | None:
    """The ``git`` entry of a run record. Uncommitted changes go to ``git_diff.patch`` in
    ``run_dir``, named by ``diff``; reproduce the run's code with
    ``git checkout <commit> && git apply git_diff.patch`` (untracked files are only listed).
    Never raises: a run is not failed for its bookkeeping."""
    try:
        state = git_state()
    except Exception as exc:  # any surprise from git must not fail the run
        return {"commit": None, "error": f"{type(exc).__name__}: {exc}"}
    if state is None:
        return None
    entry = {k: v for k, v in state.items() if not k.startswith("_")}
    patch: bytes = state.get("_patch") or b""
    entry["diff"] = None
    if len(patch) > MAX_PATCH_BYTES:
        entry["diff_skipped"] = f"the uncommitted diff is over {MAX_PATCH_BYTES} bytes"
    elif patch:
        try:
            write_bytes_atomically(run_dir / GIT_DIFF, patch)
            entry["diff"] = GIT_DIFF
        except OSError as exc:
            entry["diff_skipped"] = f"could not write {GIT_DIFF}: {exc}"
    return entry


def run_hyperparams(config: Any) -> dict[str, Any]:
    """What a run logs to its log store as hyperparameters."""
    return {
        "name": config.name,
        "model": config.model.name,
        "algorithm": config.algorithm.model_dump(),
        "backend": config.backend.model_dump(),
        "seed": config.seed,
        "tags": config.tags,
    }


def write_run_started(
    run_dir: Path,
    *,
    run_id: str,
    name: str,
    config: dict[str, Any],
    overrides: list[str],
    started_at: datetime,
) -> None:
    """The record of a run that has started and not ended yet (``finished: false``).

    It tells a reader (``evsys results`` on a sweep still going) that the arm is running, not
    missing; :func:`write_run_result` replaces it when the run ends. ``host`` and ``pid`` let a
    reader on the same machine tell a running arm from one whose process died.
    """
    safe_config = redact(config)
    write_json_atomically(
        run_dir / RUN_RESULT,
        {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "name": name,
            "status": "running",
            "finished": False,
            "metrics": {},
            "started_at": started_at.isoformat(),
            "run_dir": str(run_dir),
            "config": safe_config,
            "config_hash": config_hash(safe_config),
            "overrides": [redact_override(o) for o in overrides],
            "host": platform.node(),
            "pid": os.getpid(),
        },
    )


def traces_of_a_dead_run(run_dir: Path) -> tuple[datetime | None, dict[str, float]]:
    """When a run that died without its record started, and the last value of each metric it
    logged: for the record written on its behalf (killed, out of memory). The start is when its
    ``.hydra/`` files were written, the metrics are those of ``metrics.jsonl`` (jsonl log store)."""
    hydra_files = [p for p in (run_dir / ".hydra").glob("*") if p.is_file()]
    try:
        first = min(p.stat().st_mtime for p in hydra_files) if hydra_files else None
    except OSError:
        first = None
    started_at = datetime.fromtimestamp(first, UTC) if first is not None else None
    metrics: dict[str, float] = {}
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            logged = json.loads(line)
        except ValueError:
            continue  # the line it was writing when it died
        if isinstance(logged, dict):
            metrics |= {
                k: v
                for k, v in logged.items()
                if k not in ("step", "time") and isinstance(v, int | float)
            }
    return started_at, metrics


def write_run_result(run_dir: Path, result: RunResult, **fields: Any) -> dict[str, Any]:
    """Write the record of a run that ended (:func:`run_record`) as its ``run_result.json``."""
    record = run_record(run_dir, result, **fields)
    write_json_atomically(run_dir / RUN_RESULT, record)
    return record


def run_record(
    run_dir: Path,
    result: RunResult,
    *,
    name: str,
    config: dict[str, Any],
    overrides: list[str],
    started_at: datetime,
    traceback: str | None = None,
    error_type: str | None = None,
    runtime: dict[str, Any] | None = None,
    data_lineage: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The record of a run that ended, as ``run_result.json`` keeps it. ``data_lineage``: the id
    (or path) and sha256 of every data file the run read (:func:`evsys.data.lineage.data_lineage`)."""
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
        "git": record_git_state(run_dir),
        "host": platform.node(),
        # The CPUs the arm could use and torch's threads (see evsys.cpus); None: not recorded.
        "runtime": runtime,
        "data_lineage": data_lineage or [],
    }
    return record
