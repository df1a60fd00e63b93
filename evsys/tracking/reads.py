"""The client's reads: synchronous calls to the service, which raise on failure.

A base of :class:`~evsys.tracking.client.DashboardClient`, apart from its writes (mirrored, then
sent in the background), so each file reads top to bottom as one way of talking to the service.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

from evsys.tracking.errors import DashboardClientError
from evsys.tracking.transport import Transport
from evsys.tracking.wire import read_number

KINDS = ("datasets", "benchmarks")


class ServiceReads:
    """Reads over the client's transport; None there (offline) refuses them."""

    _transport: Transport | None

    def _online(self) -> Transport:
        if self._transport is None:
            raise DashboardClientError("offline (EVSYS_OFFLINE): reading needs the service")
        return self._transport

    def list_experiments(
        self, *, tag: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        query = {"tag": tag, "status": status, "limit": limit}
        return self._online().json("GET", "/experiments", query=query)["experiments"]

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        return self._online().json("GET", f"/experiments/{_segment(experiment_id)}")

    def list_runs(
        self, *, experiment_id: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        query = {"experiment_id": experiment_id, "status": status}
        return self._online().json("GET", "/runs", query=query)["runs"]

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._online().json("GET", f"/runs/{_segment(run_id)}")

    def get_run_steps(self, run_id: str) -> list[dict[str, Any]]:
        """``[{"step", "name", "value"}, ...]`` ordered by step; NaN and infinities as floats."""
        steps = self._online().json("GET", f"/runs/{_segment(run_id)}/steps")["steps"]
        for step in steps:  # "NaN", "Infinity", "-Infinity" back to the floats they name
            step["value"] = read_number(step["value"])
        return steps

    def upload(self, kind: str, name: str, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Upload a dataset (``.jsonl``) or benchmark (``.tar.gz`` or ``.jsonl``) as the next
        version of ``name``: ``{"id", "name", "version", "sha256", "size"}``."""
        file = Path(path)
        if not file.is_file():
            raise DashboardClientError(f"upload: {file} is not a file")
        return self._online().upload(f"/{_kind(kind)}", {"name": name}, file)

    def resolve(self, kind: str, id_or_name: str) -> dict[str, Any]:
        """The metadata of a dataset or benchmark version; a name resolves to its latest."""
        return self._online().json("GET", f"/{_kind(kind)}/{_segment(id_or_name)}")

    def download(self, kind: str, id: str, dest: str | os.PathLike[str]) -> Path:
        path = f"/{_kind(kind)}/{_segment(id)}/content"
        return self._online().download(path, Path(dest))


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise DashboardClientError(f"kind {kind!r} is not one of {list(KINDS)}")
    return kind


def _segment(text: str) -> str:
    if not text:
        raise DashboardClientError("an empty id")
    return urllib.parse.quote(text, safe="")
