"""``evsys dataset upload NAME PATH`` / ``evsys benchmark upload NAME PATH``: data for the dashboard.

A dataset is a ``.jsonl`` file; a benchmark is a harbor directory (``tasks.jsonl``, optional
``metadata.yaml``), sent as a ``.tar.gz`` made here, or a ``.jsonl`` of tasks. Each upload of a
name is its next version, unless its bytes are those of the latest version (the archive is made
reproducibly: sorted members, no times or owners, so an unchanged directory is the same
version). Prints the id that ``data.dataset_id`` / ``metadata.benchmark[].id`` take.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import sys
import tarfile
import tempfile
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
TASKS_FILE = "tasks.jsonl"
KINDS = {"dataset": "datasets", "benchmark": "benchmarks"}


class BadUpload(ValueError):
    """What is wrong with the NAME or PATH given."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    upload = actions.add_parser("upload", help="upload a new version; prints its id")
    upload.add_argument("name", help="the name versions are filed under (letters, digits, _.-)")
    upload.add_argument(
        "path", type=Path, help="a .jsonl file (a benchmark: or its harbor directory)"
    )
    upload.add_argument("--json", action="store_true", help="print the service's answer as JSON")


def execute(args: argparse.Namespace) -> int:
    from evsys.cli.tracked import exit_code
    from evsys.data.references import reading_client
    from evsys.tracking.errors import DashboardClientError

    kind = KINDS[args.command]
    try:
        with tempfile.TemporaryDirectory(prefix="evsys-upload-") as scratch:
            payload = upload_file(kind, args.name, args.path, Path(scratch))
            with reading_client() as client:
                answer = client.upload(kind, args.name, payload)
    except BadUpload as exc:
        print(f"evsys {args.command} upload: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DashboardClientError as exc:
        print(f"evsys {args.command} upload: {exc}", file=sys.stderr)
        return exit_code(exc)
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(f"{args.command} {answer['name']} version {answer['version']}: id {answer['id']}")
    return EXIT_OK


def upload_file(kind: str, name: str, path: Path, scratch: Path) -> Path:
    """The file to send for ``path``: itself (a ``.jsonl``), or a benchmark directory packed
    into ``scratch``. Raises BadUpload saying what is wrong."""
    if not NAME.match(name):
        raise BadUpload(
            f"name {name!r}: use letters, digits, '_', '.' and '-' (at most 128, starting "
            "with a letter or digit)"
        )
    if path.is_dir():
        if kind != "benchmarks":
            raise BadUpload(f"{path} is a directory; a dataset is one .jsonl file")
        return pack_benchmark(path, scratch / f"{name}.tar.gz")
    if not path.is_file():
        raise BadUpload(f"{path}: no such file or directory")
    if path.suffix != ".jsonl":
        expected = "a .jsonl file" if kind == "datasets" else "a harbor directory or a .jsonl"
        raise BadUpload(f"{path}: expected {expected}")
    return path


def pack_benchmark(directory: Path, archive: Path) -> Path:
    """A reproducible ``.tar.gz`` of a harbor directory: regular files and folders only (a
    link or device is refused, naming it), relative names, no times, owners or modes."""
    if not (directory / TASKS_FILE).is_file():
        raise BadUpload(f"{directory}: not a harbor benchmark (no {TASKS_FILE})")
    members = sorted(directory.rglob("*"))
    for member in members:
        if member.is_symlink() or not (member.is_file() or member.is_dir()):
            raise BadUpload(
                f"{member}: only regular files and folders are uploaded (a link or special "
                "file could point outside the benchmark)"
            )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.relative_to(directory).as_posix())
            if member.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            data = member.read_bytes()
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    with archive.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buffer.getvalue())
    return archive
