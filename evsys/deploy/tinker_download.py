"""A ``tinker://`` checkpoint fetched through the tinker SDK's own download calls.

tinker 0.38 downloads weights as an *external weights* export, one signed URL per file: a
training state (``tinker://<run>/weights/<name>``, a run's ``final_checkpoint``) is loaded into a
new training client and exported (``TrainingClient.save_weights_external``, with a short TTL, and
deleted again after the download, as ``tinker checkpoint download`` does); an export
(``…/external_weights/<name>``) is downloaded as it is (``RestClient.get_external_weights_urls``).
Sampler weights cannot be downloaded (the service offers no export of them).

The file names and URLs of the reply are the service's text, so they are data: every name must be
a plain relative path (no ``..``, no absolute path, no odd characters) before anything is fetched,
each file is created fresh (``O_EXCL | O_NOFOLLOW``) inside a new temporary directory, and only
``http(s)`` URLs are opened. The API key goes only to the configured Tinker base URL, never with
a signed URL on another host, and never through a redirect. What a reply may make this machine
store is bounded too: at most :data:`MAX_FILES` files and :data:`MAX_DOWNLOAD_BYTES` in all (a
LoRA adapter is megabytes to a few GiB), checked against each announced length before a file is
written and against the bytes as they arrive.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from evsys.errors import BackendError, ConfigError, Problem

EXPORT_NAME = "evsys-deploy"
EXPORT_TTL_S = 3600  # the temporary export outlives a slow download, then expires by itself
MAX_FILES = 1000
MAX_DOWNLOAD_BYTES = 64 << 30
_CHUNK = 1 << 20
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")
_DOWNLOADABLE = "tinker://<run>/weights/<name> (a run's final_checkpoint) or an external weights "
_DOWNLOADABLE += "export tinker://<run>/external_weights/<name>"


def check_downloadable(checkpoint: str) -> str:
    """The checkpoint's type (``training`` or ``external``); a ConfigError for anything the SDK
    cannot download (sampler weights, a malformed path)."""
    from evsys.backends.tinker.connection import require_tinker

    require_tinker()  # a MissingDependencyError (pip install 'evsys[tinker]'), not an ImportError
    from tinker import ParsedCheckpointTinkerPath

    try:
        kind = ParsedCheckpointTinkerPath.from_tinker_path(checkpoint).checkpoint_type
    except ValueError:
        kind = None
    if kind not in ("training", "external"):
        why = "sampler weights cannot be downloaded" if kind == "sampler" else "not a checkpoint"
        raise ConfigError(
            Problem("run_dir", f"{checkpoint}: {why}", value=checkpoint, expected=_DOWNLOADABLE)
        )
    return str(kind)


def download_checkpoint(checkpoint: str, into: Path, connection: Mapping[str, Any]) -> None:
    """Every file of ``checkpoint`` written under ``into`` (a new, empty directory).

    ``connection`` holds the run's Tinker connection params (``base_url``, ``api_key_env``, …).
    A ConfigError for a path that cannot be downloaded, a BackendError when the service refuses,
    names a hostile file, or delivers less than it announced.
    """
    from evsys.backends.tinker.connection import ConnectionParams, connect, sdk_errors, wait

    kind = check_downloadable(checkpoint)
    known = set(ConnectionParams.model_fields)
    params = ConnectionParams(**{k: v for k, v in connection.items() if k in known})
    service = connect(params)  # the health probe and the key first: a bad service fails fast
    status = "errored"
    try:
        export = checkpoint
        if kind == "training":
            with sdk_errors(f"exporting {checkpoint}", params):
                trainer = wait(
                    service.client.create_training_client_from_state(checkpoint),
                    params,
                    "the checkpoint's training state",
                )
                saved = trainer.save_weights_external(EXPORT_NAME, ttl_seconds=EXPORT_TTL_S)
                export = wait(saved, params, "the exported weights").path
        try:
            with sdk_errors(f"getting the download URLs of {export}", params):
                signed = wait(service.rest.get_external_weights_urls(export), params, "the URLs")
            download_files(signed.urls, into, service.url, params.api_key(), params)
        finally:
            if export != checkpoint:
                _delete_quietly(service.rest, export, params)
        status = "success"
    finally:
        with suppress(Exception):  # the download's outcome stands either way
            service.client.close(status).result(timeout=params.connect_timeout_s)


def download_files(
    urls: Mapping[str, str], into: Path, base_url: str, api_key: str, params: Any
) -> None:
    """Fetch each ``name → signed URL`` into ``into``; every name is checked before any fetch."""
    if not isinstance(urls, Mapping) or not urls:
        raise BackendError("the Tinker service listed no files to download")
    if len(urls) > MAX_FILES:
        raise BackendError(
            f"the Tinker service listed {len(urls)} files to download, more than {MAX_FILES}: "
            "the download was refused, nothing was written"
        )
    targets = {name: member_path(into, name) for name in urls}
    for name in urls:
        _check_url(name, urls[name])
    room = MAX_DOWNLOAD_BYTES
    for name in sorted(urls):
        target = targets[name]
        target.parent.mkdir(parents=True, exist_ok=True)
        room -= _fetch(name, urls[name], target, base_url, api_key, params.request_timeout_s, room)


def member_path(into: Path, name: Any) -> Path:
    """Where the file ``name`` of a download goes under ``into``; a BackendError for a name that
    is no plain relative path (absolute, ``..``, empty parts, odd characters)."""
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or not all(_PART.fullmatch(part) for part in parts) or len(parts) > 8:
        raise BackendError(
            f"the Tinker service named a file {str(name)[:200]!r} that is not a plain relative "
            "path: the download was refused, nothing was written"
        )
    return into.joinpath(*parts)


def _check_url(name: str, url: Any) -> None:
    scheme = urllib.parse.urlsplit(url).scheme if isinstance(url, str) else ""
    if scheme not in ("http", "https"):
        raise BackendError(
            f"the Tinker service gave no http(s) URL for {name}: the download was refused"
        )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _fetch(
    name: str, url: str, target: Path, base_url: str, key: str, timeout_s: float, room: int
) -> int:
    """Download ``url`` into ``target``; the bytes written, at most ``room``."""
    request = urllib.request.Request(url)
    if _origin(url) == _origin(base_url):
        # The configured service itself: its key, which a redirect does not carry along.
        request.add_unredirected_header("X-API-Key", key)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    received, expected = 0, None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            if expected is not None and expected > room:
                raise _TooLarge()
            fd = os.open(target, flags, 0o644)
            with os.fdopen(fd, "wb") as out:
                # One byte past the room at most: enough to know it is exceeded.
                while block := response.read(min(_CHUNK, room - received + 1)):
                    received += len(block)
                    if received > room:
                        raise _TooLarge()
                    out.write(block)
    except _TooLarge:
        raise BackendError(
            f"downloading {name} failed: the checkpoint's files exceed {_size(MAX_DOWNLOAD_BYTES)} "
            "in all, more than an adapter holds: refused"
        ) from None
    except urllib.error.HTTPError as exc:
        exc.close()
        why = "the signed URL expired or was refused" if 400 <= exc.code < 500 else "server error"
        raise BackendError(f"downloading {name} failed: HTTP {exc.code} ({why})") from None
    except http.client.IncompleteRead as exc:
        raise BackendError(
            f"downloading {name} failed: the connection ended after {len(exc.partial)} bytes "
            "(a truncated download)"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise BackendError(f"downloading {name} failed: {reason}") from None
    if expected is not None and received != expected:
        raise BackendError(
            f"downloading {name} failed: {received} of {expected} bytes arrived (truncated)"
        )
    return received


def _size(n: int) -> str:
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n:,} bytes"


class _TooLarge(Exception):
    """More bytes than the download may store."""


def _delete_quietly(rest: Any, export: str, params: Any) -> None:
    """Remove the temporary export; it expires after EXPORT_TTL_S when this fails."""
    with suppress(Exception):
        rest.delete_checkpoint_from_tinker_path(export).result(timeout=params.connect_timeout_s)


def fresh_directory(parent: Path, prefix: str) -> Path:
    """A new directory under ``parent`` (made with its parents), for a download in progress."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
