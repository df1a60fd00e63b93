"""The local cache of dashboard references: where a pulled dataset or benchmark id lies
(``.evsys/<kind>/<id>/``), the pins of names (``.evsys/<kind>/_names/``), and whether a reference
can be resolved on this machine without asking the network.

Standard library only, below the config schema, which refuses a reference nothing here can
resolve; :mod:`evsys.data.references` pulls into it and resolves through the service.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["datasets", "benchmarks"]
CACHE_DIR = ".evsys"
REFERENCE_FILE = "reference.json"
DATASET_FILE = "rows.jsonl"
TASKS_FILE = "tasks.jsonl"
PINS = "_names"
SINGULAR = {"datasets": "dataset", "benchmarks": "benchmark"}


@dataclass(frozen=True)
class CachedReference:
    """What a reference resolved to, and where its content lies on this machine."""

    kind: str
    id: str
    name: str | None
    version: int | None
    sha256: str
    size: int | None
    directory: Path

    @property
    def content(self) -> Path:
        """The JSONL rows of a dataset; a benchmark's directory (tasks.jsonl, metadata.yaml)."""
        return self.directory / DATASET_FILE if self.kind == "datasets" else self.directory

    def lineage(self) -> dict[str, Any]:
        """The entry of a run's ``data_lineage`` for this reference."""
        return {
            "source": "dashboard",
            "kind": SINGULAR[self.kind],
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
        }


def cache_root() -> Path:
    return Path.cwd() / CACHE_DIR


def dashboard_configured() -> bool:
    """Whether a dashboard can be asked: a key in ``EVSYS_API_KEY``, and not ``EVSYS_OFFLINE``."""
    offline = os.environ.get("EVSYS_OFFLINE", "").strip().lower() in ("1", "true", "yes")
    return bool(os.environ.get("EVSYS_API_KEY")) and not offline


def why_unresolvable(kind: Kind, reference: str) -> str | None:
    """Why ``reference`` (an id or a name) cannot be resolved on this machine, or None when it
    can be: the dashboard is configured, or the cache already holds it. Looks at no network."""
    if (
        dashboard_configured()
        or cached_reference(kind, reference)
        or pinned_reference(kind, reference)
    ):
        return None
    return (
        "no dashboard is configured (set EVSYS_API_KEY, and EVSYS_API_URL unless it is "
        f"http://localhost:8000) and {CACHE_DIR}/{kind}/ does not hold it"
    )


def cached_reference(kind: str, reference_id: str) -> CachedReference | None:
    directory = id_dir(kind, reference_id)
    if directory is None:
        return None
    try:
        meta = json.loads((directory / REFERENCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return CachedReference(
        kind=kind,
        id=meta["id"],
        name=meta.get("name"),
        version=meta.get("version"),
        sha256=meta["sha256"],
        size=meta.get("size"),
        directory=directory,
    )


def pinned_reference(kind: str, name: str) -> CachedReference | None:
    if not safe_component(name):
        return None
    try:
        pin = json.loads((cache_root() / kind / PINS / f"{name}.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return cached_reference(kind, str(pin.get("id")))


def write_pin(kind: str, name: str, reference_id: str) -> None:
    if not safe_component(name):
        return
    pins = cache_root() / kind / PINS
    pins.mkdir(parents=True, exist_ok=True)
    temporary = pins / f".{name}.{uuid.uuid4().hex}"
    temporary.write_text(json.dumps({"name": name, "id": reference_id}), encoding="utf-8")
    os.replace(temporary, pins / f"{name}.json")


def id_dir(kind: str, reference_id: str) -> Path | None:
    """``.evsys/<kind>/<id>``, or None for an id that is no plain file name (a hostile one)."""
    if not safe_component(reference_id) or reference_id == PINS:
        return None
    return cache_root() / kind / reference_id


def safe_component(text: str) -> bool:
    return bool(text) and text not in (".", "..") and not any(c in text for c in "/\\\0")
