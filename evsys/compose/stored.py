"""Composition work kept on disk, so that the next process does not redo it.

Merging a defaults list (the config files it names, Hydra's own config, the registry's options)
costs ≈ 0.1 s, and finding the config groups costs Hydra's plugin scan (≈ 50 ms): more than
everything else ``evsys validate`` does. Both depend only on files, so their results are kept in
the cache folder (:func:`evsys.paths.cache_dir`), each entry stamped with everything it was built
from:

- every file under the config folders it read (``file://``, ``evsys-file://`` and
  ``evsys-experiments://`` entries of its search path: the bundled ``conf/``, the project's
  ``conf/`` and ``experiments/``, a plugin's folders), with its size and modification time;
- the ``hydra_plugins`` packages on ``sys.path`` (search-path plugins, config sources, the
  structured configs of sweepers and launchers) and evsys's own composing code;
- the installed distributions (Hydra, OmegaConf and every plugin: their metadata folders);
- the registry's published group options;
- the names in Hydra's ConfigStore (structured configs): one stored since the entry was built
  (by code of the process, not by a plugin) makes it stale.

Any change to one of them rebuilds the entry; a process that registered extensions of its own
never reads or writes the cache (its options are its own). Config folders a package serves
(``pkg://``) count through their distribution's metadata; an editable install's package folder
is not watched. Entries are pickles: OmegaConf nodes keep their flags and Hydra's typed schema
only that way. The cache folder is the user's own, like the interpreter's bytecode cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evsys import __version__
from evsys.entry_points import install_key, installed_distributions
from evsys.files import write_bytes_atomically
from evsys.paths import PACKAGE_DIR, cache_dir, project_config_folders

FORMAT = 2


def load(kind: str, key: tuple[Any, ...]) -> Any | None:
    """The value stored for ``key``, or None when there is none or what it was built from changed."""
    try:
        with open(_path(kind, key), "rb") as f:
            roots, structured, stamp = pickle.load(f)
            # Hydra's structured configs: this process may not have imported every plugin that
            # stores some (the plugin scan is what is saved), but one stored since is new.
            if stamp != _stamp(roots) or not _structured_configs() <= structured:
                return None
            return pickle.load(f)
    except Exception:  # missing, unreadable, from another version: build it again
        return None


def save(kind: str, key: tuple[Any, ...], value: Any, roots: Iterable[str]) -> None:
    """Store ``value`` for ``key``; ``roots`` are the config folders it was read from."""
    roots = sorted(set(roots))
    try:
        header = pickle.dumps(
            (roots, _structured_configs(), _stamp(roots)), protocol=pickle.HIGHEST_PROTOCOL
        )
        body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        path = _path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, header + body)
    except Exception:  # a read-only home, a value that cannot be pickled: only costs speed
        pass


FOLDER_SCHEMES = ("file", "evsys-file", "evsys-experiments")
"""Search-path schemes whose entries are folders of config files (Hydra's and evsys's sources)."""


def config_folder(url: str) -> str | None:
    """The folder of a file-based search-path entry: a plain folder (as Hydra gives the primary
    config path) or a ``file://``, ``evsys-file://`` or ``evsys-experiments://`` URL; None for
    any other source (``pkg://``, the registry, structured configs)."""
    scheme, found, where = url.partition("://")
    if not found:
        return scheme
    return where if scheme in FOLDER_SCHEMES and where else None


def config_roots(search_path: Iterable[Any]) -> list[str]:
    """The folders of the file-based entries of a Hydra search path (or config sources)."""
    return [folder for e in search_path if (folder := config_folder(str(e.path))) is not None]


def _path(kind: str, key: tuple[Any, ...]) -> Path:
    # One file per key, overwritten when stale: the folder grows with the keys, not the edits.
    digest = hashlib.sha1(repr((FORMAT, key, os.getcwd())).encode()).hexdigest()[:20]
    return cache_dir() / f"compose-{install_key()}" / f"{kind}-{digest}.pkl"


def _stamp(roots: list[str]) -> str:
    from evsys.compose.nodes import GROUP_NODES

    # The project's folders count while they are missing too: one created later is on the path.
    folders = [str(folder) for folder in project_config_folders()]
    parts: list[Any] = [FORMAT, __version__, sys.version, os.getcwd(), folders]
    parts += files_state([*roots, *_plugin_folders(), str(PACKAGE_DIR / "compose")])
    parts += installed_distributions()
    parts.append(json.dumps(GROUP_NODES, sort_keys=True, default=str))
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def _structured_configs() -> frozenset[str]:
    """``group/name`` of every config in Hydra's ConfigStore of this process."""
    from hydra.core.config_store import ConfigStore

    found = set()
    folders: list[tuple[str, dict[str, Any]]] = [("", ConfigStore.instance().repo)]
    while folders:
        prefix, folder = folders.pop()
        for name, entry in folder.items():
            if isinstance(entry, dict):
                folders.append((f"{prefix}{name}/", entry))
            else:
                found.add(f"{prefix}{name}")
    return frozenset(found)


def _plugin_folders() -> list[str]:
    try:
        spec = importlib.util.find_spec("hydra_plugins")
    except (ImportError, ValueError):
        return []
    return list(spec.submodule_search_locations or []) if spec is not None else []


def files_state(roots: list[str]) -> list[Any]:
    """Every file under ``roots`` with its size and modification time (bytecode left out)."""
    state: list[Any] = []
    for root in roots:
        state.append(root)
        for folder, folders, files in os.walk(root):
            folders[:] = sorted(f for f in folders if f != "__pycache__")
            for name in sorted(files):
                try:
                    st = os.stat(os.path.join(folder, name))
                except OSError:
                    continue
                state.append((folder, name, st.st_mtime_ns, st.st_size))
    return state
