"""A run's data lineage: the id and content hash of every data file it reads.

Recorded in ``run_result.json`` (``data_lineage``) and on the run's dashboard entry, so that a
result can be traced to the exact bytes it trained and was scored on. A dashboard dataset or
benchmark is named by its id (its sha256 is the one the service recorded); a local file by its
path, resolved as the data store resolves it, with the sha256 of its bytes now; a Hugging Face
Hub dataset by its id, config and split, with the sha256 of the cached copy the run reads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from evsys.data.hub import load_hub_dataset
from evsys.data.references import (
    benchmark_reference,
    dataset_reference,
    file_sha256,
    is_benchmark_reference,
)
from evsys.data.sources import hub_dataset, resolve_path
from evsys.errors import DataError

TASKS_FILE, METADATA_FILE = "tasks.jsonl", "metadata.yaml"


def data_lineage(config: Any, store: Any) -> list[dict[str, Any]]:
    """Every data file ``config`` (an ExperimentConfig) names, read through ``store``. A file that
    cannot be read is listed with its error: the run then fails on it, and says which."""
    entries: list[dict[str, Any]] = []
    blocks = [("data", config.data)] if config.continual is None else []
    if config.continual is not None:
        blocks += [(f"continual.{s.name}", s) for s in config.continual.datasets]
    if config.eval.eval_data is not None:
        blocks.append(("eval.eval_data", config.eval.eval_data))
    for role, data in blocks:
        entries += _data_entries(role, data, store)
    for index, spec in enumerate(config.metadata.benchmark):
        entries += _benchmark_entries(f"metadata.benchmark[{index}]", spec, store)
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    for entry in entries:
        unique.setdefault((entry.get("id"), entry.get("path")), entry)
    return list(unique.values())


def _data_entries(role: str, data: Any, store: Any) -> list[dict[str, Any]]:
    entries = []
    files: list[str] = []
    if data.reference is not None:  # its rows from the dashboard; held-out rows may be a file
        entries.append(_reference_entry(role, lambda: dataset_reference(data)))
        files = [data.eval_path] if data.eval_path is not None else []
    elif data.source_kind in ("jsonl", "json"):
        files = [p for p in (data.path, data.eval_path) if p is not None]
    elif (hub := hub_dataset(data, store)) is not None:
        entries.append(_hub_entry(role, hub, data.hf_config, data.hf_split))
    elif data.source_kind == "hf_dataset" and data.hf_data_files is not None:
        names = data.hf_data_files
        files = [names] if isinstance(names, str) else list(names)
    return entries + [_file_entry(role, resolve_path(name, store)) for name in files]


def _hub_entry(role: str, name: str, config: str | None, split: str) -> dict[str, Any]:
    """The Hub dataset with the sha256 of the cached copy the run reads: of its Arrow files'
    sha256s, in order (read once more here; a multi-GiB dataset takes seconds)."""
    entry: dict[str, Any] = {"role": role, "source": "hub", "id": name}
    entry |= {"config": config, "split": split}
    try:  # from the cache once it is there: the run reads the same copy right after
        files = [Path(f["filename"]) for f in load_hub_dataset(name, config, split).cache_files]
        digest = hashlib.sha256("".join(file_sha256(f) for f in files).encode())
        entry["sha256"] = digest.hexdigest()
    except DataError as exc:
        entry["sha256"], entry["error"] = None, str(exc)
    except OSError as exc:
        entry["sha256"], entry["error"] = None, f"{type(exc).__name__}: {exc}"
    return entry


def _benchmark_entries(role: str, spec: Any, store: Any) -> list[dict[str, Any]]:
    if is_benchmark_reference(spec):
        return [_reference_entry(role, lambda: benchmark_reference(spec))]
    directory = resolve_path(spec.path, store)
    found = [directory / TASKS_FILE]
    if (directory / METADATA_FILE).is_file():
        found.append(directory / METADATA_FILE)
    return [_file_entry(role, path) for path in found]


def _reference_entry(role: str, resolve: Any) -> dict[str, Any]:
    try:
        return {"role": role, **resolve().lineage()}
    except DataError as exc:
        return {"role": role, "source": "dashboard", "error": str(exc)}


def _file_entry(role: str, path: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": role, "source": "file", "path": str(path)}
    try:
        entry["sha256"] = file_sha256(path)
    except OSError as exc:
        entry["sha256"], entry["error"] = None, f"{type(exc).__name__}: {exc}"
    return entry
