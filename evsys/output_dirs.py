"""Output directories: checked before a run, claimed by exactly one process while it writes.

A run or sweep directory is named after the clock and the config's ``name``
(``outputs/sweeps/<date>/<time>_<name>``). Two sweeps started in the same second would share it,
and a ``name`` such as ``../../x`` would put it somewhere else entirely. So:

- ``name`` is a plain name (no path separators, not ``.`` or ``..``), and a relative output
  directory stays inside the working directory; an absolute path is taken as meant.
- A directory is *claimed* before anything is written into it: a stamped one (its path reads
  ``${now:…}``) is created with ``mkdir`` that fails when it exists, and a collision gets the next
  free suffix (``…_2``); a fixed one (``hydra.sweep.dir=<dir>``, ``evsys resume <dir>``) may be
  reused on purpose. Either way the claimer holds a lock file created with ``O_EXCL``, so a
  second process never writes into a directory that a live one holds.
"""

from __future__ import annotations

import atexit
import os
import socket
import tempfile
import time
from pathlib import Path

from evsys.errors import ConfigError, Problem

LOCK = ".evsys.lock"
MAX_SUFFIX = 1000
# An unreadable lock older than this was left by a process that died while writing it.
STALE_UNREADABLE_S = 10.0

# Directories this process holds → the highest one the claim created (removed again, with the
# claimed one, when the claim ends and nothing was written).
_held: dict[Path, Path | None] = {}


# -- checks that write nothing -------------------------------------------------------------------


def name_problems(name: object) -> list[Problem]:
    """``name`` names the run's directory: it must not be a path."""
    if not isinstance(name, str) or not name:
        return []  # the schema reports a missing or non-text name
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        return [
            Problem(
                path="name",
                message="a run name names a directory; it cannot be a path",
                value=name,
                expected="a name without '/', '\\' or '..', e.g. " + repr(_plain(name) or "my-run"),
            )
        ]
    return []


def dir_problems(key: str, text: object) -> list[Problem]:
    """Why the output directory ``text`` (the resolved value of ``key``) cannot be used."""
    if not isinstance(text, str) or not text.strip():
        return [
            Problem(
                path=key,
                message="the output directory is empty",
                value=text,
                expected="a directory path, e.g. outputs/sweeps/my-sweep",
            )
        ]
    if "\0" in text:
        return [Problem(path=key, message="the output directory contains a NUL byte", value=text)]
    path = Path(text)
    if not path.is_absolute() and os.path.normpath(text).split(os.sep)[0] == "..":
        return [
            Problem(
                path=key,
                message="a relative output directory must stay inside the working directory",
                value=text,
                expected="a path without leading '..', or an absolute path (taken as meant)",
            )
        ]
    for parent in [path, *path.parents]:
        try:
            if parent.exists() and not parent.is_dir():
                return [
                    Problem(
                        path=key,
                        message=f"'{parent}' is a file, so the directory cannot be created",
                        value=text,
                    )
                ]
        except OSError as exc:  # a name too long, a component the OS refuses
            return [Problem(path=key, message=f"unusable path: {exc.strerror or exc}", value=text)]
    return _unwritable(key, text, path)


def _unwritable(key: str, text: str, path: Path) -> list[Problem]:
    """Whether a directory can be made where ``path`` will be: tried in its nearest existing
    folder with a directory made and removed at once (nothing stays). Permission bits cannot
    tell: root may write anywhere they allow, yet not into ``/proc`` or a read-only mount."""
    existing = _nearest_existing(path.absolute())
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".evsys-write-check-", dir=existing))
    except OSError as exc:
        where = "it" if existing == path.absolute() else f"'{existing}'"
        return [
            Problem(
                path=key,
                message=f"cannot write the output directory: {where} takes no new folder "
                f"({exc.strerror or exc})",
                value=text,
                expected="a directory this user can create and write",
            )
        ]
    return []


def _nearest_existing(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.is_dir():
            return candidate
    return Path(path.anchor)  # not reached: an absolute path's root exists


def _plain(name: str) -> str:
    return "-".join(
        part for part in name.replace("\\", "/").split("/") if part not in ("", ".", "..")
    )


# -- claiming -------------------------------------------------------------------------------------


def claim(directory: Path, *, fresh: bool, key: str = "hydra.sweep.dir") -> Path:
    """Create (``fresh``: a new, suffixed on collision) or reuse ``directory`` and lock it for this
    process until :func:`release` or exit. Raises ConfigError when it cannot be had."""
    directory = Path(directory)
    created = _first_missing(directory.absolute())
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            directory = _make_new(directory)
            created = created or directory.absolute()
        else:
            directory.mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            Problem(
                path=key,
                message=f"cannot create the output directory: {exc.strerror or exc}",
                value=str(directory),
            )
        ) from None
    _lock(directory, key, created)
    return directory


def release(directory: Path) -> None:
    """Give up this process's claim on ``directory``. What was written stays; a directory the
    claim created and nobody wrote into goes, so that refused input leaves nothing behind."""
    directory = Path(directory).absolute()
    if directory not in _held:
        return
    created = _held.pop(directory)
    (directory / LOCK).unlink(missing_ok=True)
    if created is None:
        return
    for empty in [directory, *directory.parents]:
        try:
            empty.rmdir()  # only when empty
        except OSError:
            return
        if empty == created:
            return


def _first_missing(path: Path) -> Path | None:
    """The highest directory on the way to ``path`` that does not exist yet."""
    missing = None
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return missing
        missing = candidate
    return missing


def holds(directory: Path) -> bool:
    return Path(directory).absolute() in _held


def _make_new(directory: Path) -> Path:
    for n in range(1, MAX_SUFFIX + 1):
        candidate = directory if n == 1 else directory.with_name(f"{directory.name}_{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{directory} and {MAX_SUFFIX - 1} suffixed siblings exist")


def _lock(directory: Path, key: str, created: Path | None) -> None:
    directory = directory.absolute()
    if directory in _held:
        return
    lock = directory / LOCK
    for _ in range(2):  # a second try after taking over a stale lock
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _live_owner(lock)
            if owner is not None:
                raise ConfigError(
                    Problem(
                        path=key,
                        message=f"the directory is in use by another evsys process ({owner}); "
                        "wait for it to finish, or choose another directory",
                        value=str(directory),
                    )
                ) from None
            lock.unlink(missing_ok=True)  # its owner is gone: a crashed or killed run
            continue
        except OSError as exc:
            raise ConfigError(
                Problem(
                    path=key,
                    message=f"cannot write into the output directory: {exc.strerror or exc}",
                    value=str(directory),
                )
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
        if not _held:
            atexit.register(_release_all)
        _held[directory] = created
        return
    raise ConfigError(Problem(path=key, message="cannot lock the directory", value=str(directory)))


def _live_owner(lock: Path) -> str | None:
    """``pid N on host`` of a lock whose process still runs (or may: another host); else None."""
    try:
        pid_text, _, host = lock.read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):  # being written right now, or left half-written by a crash
        try:
            fresh = time.time() - lock.stat().st_mtime < STALE_UNREADABLE_S
        except OSError:
            return None
        return "an owner that is still writing its lock" if fresh else None
    if host and host != socket.gethostname():
        return f"pid {pid} on {host}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return f"pid {pid}"


def _release_all() -> None:
    for directory in list(_held):
        release(directory)
