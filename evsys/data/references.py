"""Datasets and benchmarks by reference: a dashboard id or name, pulled once into a local cache.

``data.dataset_id`` / ``data.dataset_name`` and ``metadata.benchmark[].id`` / ``.name`` name what
was uploaded to the evsys dashboard (``evsys dataset upload``, ``evsys benchmark upload``). The
content of an id never changes, so it is pulled once into ``.evsys/<kind>/<id>/`` under the
working directory and read from there; a cache hit needs no network. A name resolves, through
the service, to its latest version; pre-flight pins that id (``.evsys/<kind>/_names/<name>.json``)
so that every arm of a sweep reads the same version, and a machine without the dashboard reads
the version it pulled last.

Layout of a cached id (written into a temporary directory, then renamed: never half there)::

    .evsys/datasets/<id>/rows.jsonl        the uploaded JSONL
    .evsys/benchmarks/<id>/tasks.jsonl     a harbor directory, unpacked (or the uploaded JSONL)
    .evsys/<kind>/<id>/reference.json      id, name, version, sha256, size
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evsys.errors import ConfigError, DataError, Problem
from evsys.reference_cache import (
    DATASET_FILE,
    REFERENCE_FILE,
    SINGULAR,
    TASKS_FILE,
    CachedReference,
    Kind,
    cached_reference,
    dashboard_configured,
    id_dir,
    pinned_reference,
    why_unresolvable,
    write_pin,
)

log = logging.getLogger(__name__)

UNREACHABLE = "the dashboard cannot be reached"


class UnresolvedReference(DataError):
    """A reference that cannot be resolved: unknown to the service, or no way to reach it."""


def resolve(
    kind: Kind, *, id: str | None = None, name: str | None = None, pinned: bool = False
) -> CachedReference:
    """The cached content of ``id`` (pulled now if missing) or of ``name``'s version.

    ``pinned``: a name reads the version pre-flight pinned when there is one (what an arm does);
    otherwise the service is asked for the latest version (what pre-flight does), and the pin is
    used only when no dashboard is configured. Raises :class:`UnresolvedReference` naming it.
    """
    if (id is None) == (name is None):
        raise ValueError("give exactly one of id and name")
    if id is not None:
        return cached_reference(kind, id) or _pull(kind, _ask(kind, id))
    assert name is not None
    pin = pinned_reference(kind, name)
    if pin is not None and (pinned or not dashboard_configured()):
        return pin
    cached = _pull_by_name(kind, name)
    write_pin(kind, name, cached.id)
    return cached


def preflight_references(configs: list[Any]) -> None:
    """Pre-flight of a run or sweep: every reference of every arm resolved once, before any arm
    starts; raises one ConfigError listing each reference that cannot be."""
    seen: dict[tuple[str, str, str], list[Problem]] = {}
    problems: list[Problem] = []
    for config in configs:
        for path, kind, field, value in references_of(config):
            key = (kind, field, value)
            if key not in seen:
                try:
                    resolve(kind, **{field: value})
                    seen[key] = []
                except UnresolvedReference as exc:
                    seen[key] = [Problem(path=path, message=str(exc), value=value)]
                problems += seen[key]
    if problems:
        raise ConfigError(problems, header="evsys: data references that cannot be resolved:")


def dataset_reference(data: Any) -> CachedReference | None:
    """The cached dataset ``data`` (a DataConfig) names, pulled if missing; None: local rows."""
    if data.dataset_id is not None:
        return resolve("datasets", id=data.dataset_id)
    if data.dataset_name is not None:
        return resolve("datasets", name=data.dataset_name, pinned=True)
    return None


def is_benchmark_reference(spec: Any) -> bool:
    """Whether a BenchmarkSpec names a dashboard benchmark: an ``id`` (preferred over ``path``,
    which is the offline fallback) or, with neither, its ``name``."""
    return spec.id is not None or spec.path is None


def benchmark_reference(spec: Any) -> CachedReference | None:
    """The cached benchmark ``spec`` (a BenchmarkSpec) names; None: its local ``path``."""
    if not is_benchmark_reference(spec):
        return None
    if spec.id is not None:
        return resolve("benchmarks", id=spec.id)
    return resolve("benchmarks", name=spec.name, pinned=True)


def references_of(config: Any) -> list[tuple[str, Kind, str, str]]:
    """``(config path, kind, "id" | "name", value)`` of every reference in ``config``."""
    found: list[tuple[str, Kind, str, str]] = []
    data_blocks = [("data", config.data)]
    if config.eval.eval_data is not None:
        data_blocks.append(("eval.eval_data", config.eval.eval_data))
    if config.continual is not None:
        data_blocks += [
            (f"continual.datasets[{i}]", stage) for i, stage in enumerate(config.continual.datasets)
        ]
    for where, data in data_blocks:
        if data.dataset_id is not None:
            found.append((f"{where}.dataset_id", "datasets", "id", data.dataset_id))
        elif data.dataset_name is not None:
            found.append((f"{where}.dataset_name", "datasets", "name", data.dataset_name))
    for index, spec in enumerate(config.metadata.benchmark):
        where = f"metadata.benchmark[{index}]"
        if not is_benchmark_reference(spec):
            continue
        if spec.id is not None:
            found.append((f"{where}.id", "benchmarks", "id", spec.id))
        elif spec.name is not None:
            found.append((f"{where}.name", "benchmarks", "name", spec.name))
    return found


# -- the service --------------------------------------------------------------------------------


@contextmanager
def quiet_start() -> Iterator[None]:
    """The client's start without its warning that a service that does not answer will get the
    writes later: for a client that writes nothing (reads, a key check), it is only noise."""
    tracking_log = logging.getLogger("evsys.tracking")
    level = tracking_log.level
    tracking_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tracking_log.setLevel(level)


@contextmanager
def reading_client() -> Iterator[Any]:
    """A DashboardClient from the environment (EVSYS_API_URL, EVSYS_API_KEY, EVSYS_PROJECT_ID)
    for reads and uploads; it writes nothing, so its mirror is a temporary directory."""
    from evsys.tracking.client import DashboardClient

    with tempfile.TemporaryDirectory(prefix="evsys-reads-") as mirror:
        with quiet_start():
            client = DashboardClient(log_dir=mirror)
        try:
            yield client
        finally:
            client.close()


def _ask(kind: Kind, reference: str) -> dict[str, Any]:
    """The service's metadata of ``reference`` (an id or a name)."""
    what = f"{SINGULAR[kind]} '{reference}'"
    if not dashboard_configured():
        raise UnresolvedReference(f"{what}: {why_unresolvable(kind, reference)}")
    from evsys.tracking.errors import DashboardClientError

    try:
        with reading_client() as client:
            return client.resolve(kind, reference)
    except DashboardClientError as exc:
        if exc.status == 404:
            raise UnresolvedReference(
                f"{what}: the dashboard has no such {SINGULAR[kind]} (see `evsys "
                f"{SINGULAR[kind]} upload`)"
            ) from None
        if exc.status is None:
            raise UnresolvedReference(f"{what}: {UNREACHABLE}: {exc.detail}") from None
        raise UnresolvedReference(f"{what}: the dashboard refused it: {exc.detail}") from None


def _pull_by_name(kind: Kind, name: str) -> CachedReference:
    try:
        meta = _ask(kind, name)
    except UnresolvedReference as exc:
        pin = pinned_reference(kind, name)
        if pin is None or UNREACHABLE not in str(exc):
            raise
        log.warning("%s; using version %s pulled before", exc, pin.version)
        return pin
    return cached_reference(kind, str(meta["id"])) or _pull(kind, meta)


def _pull(kind: Kind, meta: dict[str, Any]) -> CachedReference:
    """Download the content of ``meta["id"]``, check its hash, unpack it into the cache."""
    reference_id = str(meta["id"])
    final = id_dir(kind, reference_id)
    what = f"{SINGULAR[kind]} '{reference_id}'"
    if final is None:
        raise UnresolvedReference(f"{what}: the dashboard answered an id that is not a plain name")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".pull-{reference_id}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        download = staging / ".download"
        from evsys.tracking.errors import DashboardClientError

        try:
            with reading_client() as client:
                client.download(kind, reference_id, download)
        except DashboardClientError as exc:
            raise UnresolvedReference(f"{what}: download failed: {exc.detail}") from None
        digest = file_sha256(download)
        if meta.get("sha256") and digest != meta["sha256"]:
            raise UnresolvedReference(
                f"{what}: the downloaded content's sha256 {digest} is not the recorded "
                f"{meta['sha256']}"
            )
        _unpack(kind, download, staging, what)
        download.unlink()
        record = {
            "id": reference_id,
            "name": meta.get("name"),
            "version": meta.get("version"),
            "sha256": digest,
            "size": meta.get("size"),
        }
        (staging / REFERENCE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        try:
            staging.rename(final)
        except OSError:  # another arm pulled the same id first: its copy is the same bytes
            if cached_reference(kind, reference_id) is None:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    cached = cached_reference(kind, reference_id)
    assert cached is not None
    return cached


def _unpack(kind: str, download: Path, into: Path, what: str) -> None:
    if kind == "datasets":
        shutil.copyfile(download, into / DATASET_FILE)
        return
    with download.open("rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    if not gzipped:  # a benchmark uploaded as its tasks.jsonl alone
        shutil.copyfile(download, into / TASKS_FILE)
        return
    try:
        with tarfile.open(download, "r:gz") as archive:
            for member in archive.getmembers():
                if not (member.isfile() or member.isdir()) or not _inside(member.name):
                    raise UnresolvedReference(f"{what}: unsafe archive member {member.name!r}")
            archive.extractall(into, filter="data")
    except (tarfile.TarError, gzip.BadGzipFile, EOFError) as exc:
        raise UnresolvedReference(f"{what}: not a readable .tar.gz: {exc}") from None
    inner = [p for p in into.iterdir() if not p.name.startswith(".")]
    # A directory archived with its own name on top: its content is the benchmark.
    if not (into / TASKS_FILE).exists() and len(inner) == 1 and inner[0].is_dir():
        for child in inner[0].iterdir():
            child.rename(into / child.name)
        inner[0].rmdir()


def _inside(name: str) -> bool:
    parts = Path(name).parts
    return not Path(name).is_absolute() and ".." not in parts


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
