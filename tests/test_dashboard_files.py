"""Datasets and benchmarks on the dashboard service, over real HTTP on SQLite and PostgreSQL:
immutable versions, a name resolving to its latest, hostile archives and bad uploads refused
with nothing stored, the upload size limit."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the dashboard extra: pip install 'evsys[dashboard]'")
from dashboard_server import (  # noqa: E402
    SMALL_MAX_BODY,
    SMALL_MAX_UPLOAD,
    DashboardService,
    ProjectClient,
)

MAX_BODY, MAX_UPLOAD = SMALL_MAX_BODY, SMALL_MAX_UPLOAD


@pytest.fixture
def service(small_limits_dashboard: DashboardService) -> DashboardService:
    return small_limits_dashboard


@pytest.fixture
def api(service: DashboardService) -> Iterator[ProjectClient]:
    client = ProjectClient(service, service.new_project())
    yield client
    client.http.close()


def test_an_upload_over_its_limit_is_413_and_stores_nothing(
    service: DashboardService, api: ProjectClient
) -> None:
    before = stored_files(service)
    response = api.upload("datasets", "big", "rows.jsonl", b'{"a": 1}\n' * (MAX_UPLOAD // 9 + 1))
    assert response.status_code == 413
    assert api.get("/datasets") == {"datasets": []}
    assert stored_files(service) == before
    # Uploads have their own limit, above the write limit.
    fits = b'{"a": 1}\n' * (MAX_BODY // 9 + 100)
    assert api.upload("datasets", "big", "rows.jsonl", fits).status_code == 200


def stored_files(service: DashboardService) -> set[str]:
    return {
        str(p.relative_to(service.store_dir)) for p in service.store_dir.rglob("*") if p.is_file()
    }


def test_dataset_versions_are_immutable_and_a_name_is_its_latest(
    service: DashboardService, api: ProjectClient
) -> None:
    v1 = api.upload("datasets", "math", "train.jsonl", b'{"q": "1+1", "a": "2"}\n').json()
    assert (v1["name"], v1["version"], v1["size"]) == ("math", 1, 23)
    again = api.upload("datasets", "math", "other-name.jsonl", b'{"q": "1+1", "a": "2"}\n').json()
    assert again == v1  # the same bytes: the same version
    v2 = api.upload("datasets", "math", "train.jsonl", b'{"q": "2+2", "a": "4"}\n\n').json()
    assert v2["version"] == 2 and v2["id"] != v1["id"] and v2["sha256"] != v1["sha256"]

    assert api.get("/datasets/math") == v2
    assert api.get(f"/datasets/{v1['id']}") == v1
    assert api.get("/datasets/math", version=1) == v1
    assert [d["version"] for d in api.get("/datasets", name="math")["datasets"]] == [2, 1]
    content = api.http.get(f"/datasets/{v1['id']}/content")
    assert content.content == b'{"q": "1+1", "a": "2"}\n'
    assert content.headers["content-type"] == "application/x-ndjson"
    assert api.http.get("/datasets/math/content").content == b'{"q": "2+2", "a": "4"}\n\n'

    # The stored file is read-only, at a path the service made.
    stored = [service.store_dir / p for p in stored_files(service) if v1["id"] in p]
    assert len(stored) == 1 and stored[0].name == "data.jsonl"
    assert not stored[0].stat().st_mode & 0o222
    assert api.http.get("/datasets/nope").status_code == 404


def harbor_archive(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                archive.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def test_a_benchmark_archive_is_stored_as_its_bytes(api: ProjectClient) -> None:
    task_dir = tarfile.TarInfo("task-1")
    task_dir.type = tarfile.DIRTYPE
    archive = harbor_archive(
        [task_dir, ("task-1/task.toml", b"[task]\n"), ("task-1/instruction.md", b"do it")]
    )
    record = api.upload("benchmarks", "harbor-mini", "suite.tar.gz", archive).json()
    assert record["version"] == 1 and record["format"] == "tar.gz"
    content = api.http.get(f"/benchmarks/{record['id']}/content")
    assert content.content == archive
    assert content.headers["content-type"] == "application/gzip"
    jsonl = api.upload("benchmarks", "prompts", "b.jsonl", b'{"prompt": "hi"}\n').json()
    assert jsonl["format"] == "jsonl"


@pytest.mark.parametrize(
    ("member", "named"),
    [
        (("/etc/evil", b"x"), "absolute paths are refused"),
        (("task/../../evil", b"x"), "'..' is refused"),
        (special("task/link", tarfile.SYMTYPE, "/etc/passwd"), "links, devices"),
        (special("task/hard", tarfile.LNKTYPE, "task/a"), "links, devices"),
        (special("task/dev", tarfile.CHRTYPE), "links, devices"),
        (special("task/fifo", tarfile.FIFOTYPE), "links, devices"),
    ],
    ids=["absolute", "dotdot", "symlink", "hardlink", "device", "fifo"],
)
def test_a_hostile_archive_is_refused_and_nothing_is_stored(
    service: DashboardService, api: ProjectClient, member: Any, named: str
) -> None:
    before = stored_files(service)
    archive = harbor_archive([("task/a", b"fine"), member])
    response = api.upload("benchmarks", "hostile", "suite.tar.gz", archive)
    assert response.status_code == 400
    assert named in response.json()["detail"]
    assert api.get("/benchmarks") == {"benchmarks": []}
    assert stored_files(service) == before


@pytest.mark.parametrize(
    ("kind", "name", "filename", "content", "named"),
    [
        ("datasets", "../up", "a.jsonl", b"{}\n", "name '../up'"),
        ("datasets", "a/b", "a.jsonl", b"{}\n", "name 'a/b'"),
        ("datasets", "ok", "a.tar.gz", b"{}\n", "datasets takes a .jsonl file"),
        ("datasets", "ok", "a.jsonl", b"", "is empty"),
        ("datasets", "ok", "a.jsonl", b'{"a": 1}\nnot json\n', "line 2 is not JSON"),
        ("benchmarks", "ok", "a.tar.gz", b"not gzip", "not a readable .tar.gz archive"),
        ("benchmarks", "ok", "a.exe", b"MZ", "benchmarks takes a .jsonl file or a .tar.gz"),
    ],
)
def test_a_bad_upload_is_400_and_stores_nothing(
    service: DashboardService,
    api: ProjectClient,
    kind: str,
    name: str,
    filename: str,
    content: bytes,
    named: str,
) -> None:
    before = stored_files(service)
    response = api.upload(kind, name, filename, content)
    assert response.status_code == 400
    assert named in response.json()["detail"]
    assert stored_files(service) == before


def test_an_upload_without_its_fields_is_422(api: ProjectClient) -> None:
    response = api.http.post("/datasets", data={"name": "x"})
    assert response.status_code == 422
    assert "file" in response.json()["detail"]
