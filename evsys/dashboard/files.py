"""Datasets and benchmarks: immutable versions in a file store.

An upload is streamed into ``<store>/.incoming/`` while its SHA-256 is computed, checked (a
dataset is JSON Lines; a benchmark is JSON Lines or a ``.tar.gz`` of a harbor directory whose
every member is a plain file or directory inside the archive), then copied to
``<store>/<kind>/<id>/<data.jsonl | benchmark.tar.gz>``: the path is made by the service, never
from a client's name, and the file is made read-only. Each upload of a name is its next
version; the same bytes as the latest version return that version. A rejected upload leaves
nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import uuid
import zlib
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import APIRouter, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evsys.dashboard.api import DB, CurrentProject
from evsys.dashboard.models import DataVersion, Project

KINDS = ("datasets", "benchmarks")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
FORMATS = {
    "jsonl": ("data.jsonl", "application/x-ndjson"),
    "tar.gz": ("benchmark.tar.gz", "application/gzip"),
}
CHUNK = 1024 * 1024

router = APIRouter(tags=["datasets and benchmarks"])


class Rejected(ValueError):
    """An upload refused as it is (answered 400, nothing stored)."""


def upload_format(kind: str, filename: str | None) -> Literal["jsonl", "tar.gz"]:
    name = (filename or "").lower()
    if name.endswith(".jsonl"):
        return "jsonl"
    if kind == "benchmarks" and name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    allowed = (
        "a .jsonl file"
        if kind == "datasets"
        else "a .jsonl file or a .tar.gz of a harbor directory"
    )
    raise Rejected(f"file {filename!r}: {kind} takes {allowed}")


def check_jsonl(path: Path) -> None:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except (UnicodeDecodeError, ValueError):
                raise Rejected(
                    f"line {number} is not JSON (a .jsonl file holds one JSON value per line)"
                ) from None


def check_archive(path: Path) -> None:
    """Every member a plain file or directory with a relative path that stays inside."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            count = 0
            for member in archive:
                count += 1
                _check_member(member)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise Rejected(f"not a readable .tar.gz archive: {error}") from None
    if count == 0:
        raise Rejected("the archive is empty")


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise Rejected(f"archive member {name!r}: absolute paths are refused")
    if ".." in parts:
        raise Rejected(f"archive member {name!r}: '..' is refused")
    if not (member.isfile() or member.isdir()):
        raise Rejected(
            f"archive member {name!r}: links, devices and other special files are refused"
        )


def _receive(source: BinaryIO, incoming: Path) -> tuple[Path, str, int]:
    incoming.mkdir(parents=True, exist_ok=True)
    target = incoming / uuid.uuid4().hex
    digest, size = hashlib.sha256(), 0
    with target.open("wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return target, digest.hexdigest(), size


def _latest(session: Session, project: Project, kind: str, name: str) -> DataVersion | None:
    return session.execute(
        select(DataVersion)
        .filter_by(project_id=project.id, kind=kind, name=name)
        .order_by(DataVersion.version.desc())
        .limit(1)
    ).scalar_one_or_none()


def store_upload(
    session: Session, store: Path, project: Project, kind: str, name: str, upload: UploadFile
) -> DataVersion:
    if not NAME.fullmatch(name) or ".." in name:
        raise Rejected(
            f"name {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    fmt = upload_format(kind, upload.filename)
    received, sha256, size = _receive(upload.file, store / ".incoming")
    try:
        if size == 0:
            raise Rejected(f"file {upload.filename!r} is empty")
        (check_jsonl if fmt == "jsonl" else check_archive)(received)
        for _attempt in range(3):  # a concurrent upload of the same name may take our number
            latest = _latest(session, project, kind, name)
            if latest is not None and latest.sha256 == sha256:
                return latest
            version_id = uuid.uuid4().hex
            row = DataVersion(
                id=version_id,
                project_id=project.id,
                kind=kind,
                name=name,
                version=(latest.version + 1) if latest else 1,
                format=fmt,
                sha256=sha256,
                size=size,
                path=f"{kind}/{version_id}/{FORMATS[fmt][0]}",
            )
            _copy_read_only(received, store / row.path)
            session.add(row)
            try:
                session.commit()
                return row
            except IntegrityError:
                session.rollback()
                shutil.rmtree(store / kind / version_id, ignore_errors=True)
        raise HTTPException(409, f"{kind[:-1]} {name!r}: concurrent uploads; retry")
    finally:
        received.unlink(missing_ok=True)


def _copy_read_only(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True)
    shutil.copyfile(source, target)
    os.chmod(target, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # versions are immutable


def describe(row: DataVersion) -> dict[str, Any]:
    out = row.to_dict()
    del out["path"]
    return out


def _find(
    session: Session, project: Project, kind: str, id_or_name: str, version: int | None
) -> DataVersion:
    row = session.execute(
        select(DataVersion).filter_by(project_id=project.id, kind=kind, id=id_or_name)
    ).scalar_one_or_none()
    if row is None:
        query = select(DataVersion).filter_by(project_id=project.id, kind=kind, name=id_or_name)
        if version is not None:
            query = query.filter_by(version=version)
        row = session.execute(
            query.order_by(DataVersion.version.desc()).limit(1)
        ).scalar_one_or_none()
    if row is None:
        raise HTTPException(404, f"{kind[:-1]} {id_or_name!r} not found in this project")
    return row


def _routes(kind: str) -> None:
    singular = kind[:-1]

    @router.post(
        f"/{kind}", name=f"upload_{singular}", summary=f"upload a {singular} (its next version)"
    )
    def upload(
        request: Request,
        session: DB,
        project: CurrentProject,
        name: Annotated[str, Form(description="a slug: letters, digits, '.', '_', '-'")],
        file: UploadFile,
    ) -> dict[str, Any]:
        try:
            row = store_upload(session, request.app.state.store_dir, project, kind, name, file)
        except Rejected as error:
            raise HTTPException(400, str(error)) from None
        return describe(row)

    @router.get(f"/{kind}", name=f"list_{kind}")
    def listing(
        session: DB, project: CurrentProject, name: str | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        query = select(DataVersion).filter_by(project_id=project.id, kind=kind)
        if name is not None:
            query = query.filter_by(name=name)
        rows = session.execute(
            query.order_by(DataVersion.name, DataVersion.version.desc())
        ).scalars()
        return {kind: [describe(row) for row in rows]}

    @router.get(f"/{kind}/{{id_or_name}}", name=f"get_{singular}")
    def metadata(
        id_or_name: str, session: DB, project: CurrentProject, version: int | None = None
    ) -> dict[str, Any]:
        return describe(_find(session, project, kind, id_or_name, version))

    @router.get(f"/{kind}/{{id_or_name}}/content", name=f"get_{singular}_content")
    def content(
        id_or_name: str,
        request: Request,
        session: DB,
        project: CurrentProject,
        version: int | None = None,
    ) -> FileResponse:
        row = _find(session, project, kind, id_or_name, version)
        store: Path = request.app.state.store_dir
        path = (store / row.path).resolve()
        if not path.is_relative_to(store) or not path.is_file():
            raise HTTPException(
                404, f"{singular} {id_or_name!r}: its file is missing from the store"
            )
        filename, media_type = FORMATS[row.format]
        return FileResponse(
            path, media_type=media_type, filename=f"{row.name}-v{row.version}-{filename}"
        )


for _kind in KINDS:
    _routes(_kind)
