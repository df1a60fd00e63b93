"""Config files as OmegaConf nodes, kept as pickles: the bytecode cache of the config sources
evsys's app composes from.

Hydra reads every config file again for every composition: YAML parsed in pure Python, then an
OmegaConf node built key by key, 1–4 ms a file. An evsys run composes about twenty files and
registry options, and a multirun composes them all again for every arm. A pickled node loads in
a tenth of that time, so evsys's config sources (``hydra_plugins/evsys_plugins/``: its file,
package and registry sources) hand Hydra nodes from this cache: in memory for the rest of the process, on disk
(:func:`evsys.paths.cache_dir`) for the next one.

Each node is stored under the place its text came from (a file's path, a registry option's
name), with a digest of the text and of the versions that built it: an edited file is built
again and overwrites its entry, so a stale node is never served and the folder grows with the
files, not the edits. Each call returns a node of its own, as a fresh parse would (Hydra merges
into what it loads).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import Container, OmegaConf
from omegaconf.version import __version__ as omegaconf_version

from evsys.entry_points import install_key
from evsys.files import write_bytes_atomically
from evsys.paths import cache_dir, display_path

FORMAT = 1
_MEMORY_ENTRIES = 1024
_memory: dict[tuple[str, bytes], bytes] = {}
"""(origin, digest) → pickled node, of every node this process loaded (a multirun: per arm)."""


def yaml_node(file: str, text: str) -> Container:
    """The node of the YAML config ``file`` (a path, or a package resource's) whose text is
    ``text``, as ``OmegaConf.load`` makes it; a YAML error names ``file``."""

    def parse() -> Container:
        stream = io.StringIO(text)
        stream.name = file
        try:
            return OmegaConf.load(stream)
        except yaml.YAMLError as exc:  # reported by Hydra and evsys as a message, not a traceback
            raise ConfigCompositionException(yaml_error(exc)) from None
        except OSError as exc:  # OmegaConf's word for a file holding one scalar ("0", "abc")
            raise ConfigCompositionException(
                f"{display_path(file)}: not a config: expected a mapping or a list ({exc})"
            ) from None

    return cached_node(f"yaml:{file}", text, parse)


def yaml_error(exc: yaml.YAMLError) -> str:
    """``conf/model/x.yaml, line 2: not valid YAML: <what the parser expected>``."""
    mark = getattr(exc, "problem_mark", None)
    if not isinstance(exc, yaml.MarkedYAMLError) or mark is None:
        return f"not valid YAML: {exc}"
    where = f"{display_path(mark.name)}, line {mark.line + 1}"
    return f"{where}: not valid YAML: {exc.problem or exc.context}"


def cached_node(origin: str, text: str, build: Callable[[], Container]) -> Container:
    """A fresh copy of the node ``build`` makes from ``text``, built only when this environment
    has not built it from this ``origin`` and text before."""
    digest = hashlib.sha1(f"{FORMAT}|{omegaconf_version}|{sys.version}\n{text}".encode()).digest()
    pickled = _memory.get((origin, digest))
    if pickled is not None:
        return pickle.loads(pickled)
    path = cache_dir() / f"nodes-{install_key()}" / f"{_hex(origin)}.pkl"
    pickled, node = _read(path, digest)
    if node is None:
        node = build()
        pickled = pickle.dumps(node, protocol=pickle.HIGHEST_PROTOCOL)
        _write(path, digest + pickled)
    if len(_memory) >= _MEMORY_ENTRIES:
        del _memory[next(iter(_memory))]
    _memory[origin, digest] = pickled
    return node


def _hex(origin: str) -> str:
    return hashlib.sha1(origin.encode()).hexdigest()[:24]


def _read(path: Path, digest: bytes) -> tuple[bytes, Container | None]:
    """The entry at ``path`` when it was built from the same text; a missing, stale, truncated
    or foreign one reads as none."""
    try:
        stored = path.read_bytes()
        if stored[: len(digest)] != digest:
            return b"", None
        pickled = stored[len(digest) :]
        return pickled, pickle.loads(pickled)
    except Exception:
        return b"", None


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, data)
    except OSError:
        pass  # a read-only home only costs speed
