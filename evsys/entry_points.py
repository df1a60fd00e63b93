"""The entry points installed distributions declare for evsys (``evsys.algorithms``, …, and the
reference SDK's groups, ``evsys_sdk.algorithms``, …, which plugins written for it declare).

Reading them with ``importlib.metadata`` costs ≈ 20 ms a process (importing it, then scanning
every distribution's metadata), paid by every command that loads a registry. They change only
when a distribution is installed, removed or reinstalled, so they are cached on disk, keyed by
the metadata folders on ``sys.path`` and their mtimes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

from evsys.files import write_text_atomically
from evsys.paths import PACKAGE_DIR, cache_dir

GROUP_PREFIXES = ("evsys.", "evsys_sdk.")


@dataclass(frozen=True)
class EntryPoint:
    """``name = value`` in ``group``; ``value`` is ``module`` or ``module:attribute.path``."""

    group: str
    name: str
    value: str

    def load(self) -> Any:
        """The object ``value`` names, as ``importlib.metadata.EntryPoint.load`` finds it."""
        target = self.value.split("[")[0]  # without extras: `module:attribute [extra]`
        module, _, attributes = target.partition(":")
        obj = importlib.import_module(module.strip())
        for attribute in filter(None, attributes.strip().split(".")):
            obj = getattr(obj, attribute)
        return obj


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` (one of evsys's or the reference SDK's), in the order the distributions list them."""
    return [ep for ep in _declared() if ep.group == group]


@cache
def _declared() -> tuple[EntryPoint, ...]:
    """Every ``evsys.*`` entry point, from the cache when no distribution changed; read once."""
    # The prefixes are part of the stamp: a cache read with other groups is not this one.
    stamp = hashlib.sha1(
        "\n".join([sys.version, *GROUP_PREFIXES, *installed_distributions()]).encode()
    )
    path = cache_dir() / f"entry-points-{install_key()}.json"
    try:
        cached = json.loads(path.read_text())
        if cached["stamp"] == stamp.hexdigest():
            return tuple(EntryPoint(*entry) for entry in cached["entry_points"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    declared = _read_metadata()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "stamp": stamp.hexdigest(),
            "entry_points": [[ep.group, ep.name, ep.value] for ep in declared],
        }
        write_text_atomically(path, json.dumps(payload))
    except OSError:
        pass  # a read-only home only costs speed
    return declared


def _read_metadata() -> tuple[EntryPoint, ...]:
    from importlib.metadata import entry_points as metadata_entry_points

    # `.groups` and `.select(group=…)`: the same on Python 3.11 (a mapping of groups) and later.
    declared = metadata_entry_points()
    groups = sorted(g for g in declared.groups if g.startswith(GROUP_PREFIXES))
    return tuple(
        EntryPoint(ep.group, ep.name, ep.value)
        for group in groups
        for ep in declared.select(group=group)
    )


def installed_distributions() -> list[str]:
    """The metadata folders of the distributions on ``sys.path``, where entry points are declared,
    with their mtimes: installing, removing or reinstalling a plugin changes them. Only these: the
    working directory is on ``sys.path`` too, and a run writing its outputs there must not count."""
    found = []
    for entry in dict.fromkeys(sys.path):
        try:
            with os.scandir(entry or ".") as listing:
                for item in listing:
                    if item.name.endswith((".dist-info", ".egg-info")):
                        mtime = item.stat(follow_symlinks=False).st_mtime_ns
                        found.append(f"{entry}/{item.name}:{mtime}")
        except OSError:
            continue  # a zip file, or a folder that is gone
    return sorted(found)


def install_key() -> str:
    """Names evsys's caches: one per interpreter environment and evsys install."""
    return hashlib.sha1(f"{sys.prefix}|{PACKAGE_DIR}".encode()).hexdigest()[:16]
