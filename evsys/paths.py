"""Where evsys finds its bundled config, experiments and data.

In a checkout (and an editable install) they are the top-level ``conf/``, ``experiments/`` and
``data/`` folders; a wheel carries the same folders inside the package, under ``_bundled/``.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """The bundled folder ``name`` (``conf``, ``experiments`` or ``data``)."""
    installed = PACKAGE_DIR / "_bundled" / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name


def config_dir() -> Path:
    return bundled("conf")


def experiments_dir() -> Path:
    return bundled("experiments")


def data_dir() -> Path:
    return bundled("data")


def cache_dir() -> Path:
    """Where evsys keeps what it builds once: ``$EVSYS_CACHE_DIR``, else ``$XDG_CACHE_HOME/evsys``,
    else ``~/.cache/evsys``."""
    root = os.environ.get("EVSYS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "evsys"
    )
    return Path(root)


def project_config_folders() -> tuple[Path | None, Path | None]:
    """The working directory's own ``conf/`` and ``experiments/``, as evsys's config search path
    takes them: each while it is a folder other than the bundled one. What composing keeps (in
    memory, on disk) is kept per answer, so a folder that appears later (``evsys migrate`` creates
    ``experiments/``) is seen by the next composition."""
    cwd = Path.cwd().resolve()
    conf, experiments = cwd / "conf", cwd / "experiments"
    return (
        conf if conf.is_dir() and conf != config_dir() else None,
        experiments if experiments.is_dir() and experiments != experiments_dir() else None,
    )


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a report shows it: relative to the working directory (``conf/model/x.yaml``)."""
    try:
        return os.path.relpath(path)
    except ValueError:  # on another drive
        return str(path)


def primary_config_name() -> str:
    """The primary config: ``config`` (the default experiment), or the one ``EVSYS_CONFIG_NAME``
    names, e.g. ``base`` (every group's default option and no experiment)."""
    return os.environ.get("EVSYS_CONFIG_NAME") or "config"
