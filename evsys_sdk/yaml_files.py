"""The reference's YAML functions: ``load_yaml`` (the matrix expanded into ``runs``),
``dump_yaml`` and ``validate_yaml``, over :mod:`evsys.reference_yaml`.

The reference's ``ExperimentConfig`` (the root of its file) is evsys's ``ReferenceConfig``; each
run stays the mapping the file wrote, composed and validated when it is planned or run.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from evsys.errors import ConfigError, Problem
from evsys.reference_yaml import dump_yaml, validate_yaml
from evsys.reference_yaml import load_yaml as read_yaml
from evsys.reference_yaml.source import MatrixSpec, ReferenceConfig

# evsys's own arm naming (the matrix's arms get these names when it sweeps with Hydra).
from evsys.reference_yaml.translate import _reference_names as reference_names
from evsys.sweep.arm_names import fill, slug, unique_names

ExperimentConfig = ReferenceConfig
"""The root of a reference YAML file: ``name``, stores, ``metadata``, one of run/runs/matrix."""

__all__ = [
    "ExperimentConfig",
    "MatrixSpec",
    "dump_yaml",
    "expand_matrix",
    "load_yaml",
    "validate_yaml",
]


def load_yaml(path: str | Path) -> ReferenceConfig:
    """Read a reference YAML file, its matrix expanded into ``runs`` (ConfigError naming the
    file's keys and lines when its root is wrong)."""
    return expand_matrix(read_yaml(path))


def expand_matrix(config: ReferenceConfig) -> ReferenceConfig:
    """``config`` with its ``matrix`` replaced by the ``runs`` it stands for: every combination of
    the axes' values set into a copy of ``base_run``, named as evsys names the matrix's arms.
    A config without a matrix is returned as is."""
    matrix = config.matrix
    if matrix is None:
        return config
    template = matrix.name_template or reference_names(list(matrix.axes))
    runs = []
    for values in itertools.product(*matrix.axes.values()):
        run = copy.deepcopy(matrix.base_run)
        for key, value in zip(matrix.axes, values, strict=True):
            _set_dotted(run, key, copy.deepcopy(value), f"matrix.axes.{key}")
        # {base} is the base run's name: the cell is named before its name is replaced.
        runs.append((run, slug(fill(template, SimpleNamespace(resolved=run)))))
    names = unique_names([name for _, name in runs])  # as evsys names a sweep's arms
    named = [{**run, "name": name} for (run, _), name in zip(runs, names, strict=True)]
    expanded = config.model_copy(update={"matrix": None, "runs": named})
    expanded._path, expanded._lines = config._path, config._lines
    return expanded


def _set_dotted(node: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    """Set ``a.b.c`` in nested mappings (missing ones created); a list is indexed by number."""
    *parents, last = dotted.split(".")
    for part in parents:
        node = _child(node, part, where)
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise _not_settable(dotted, where)


def _child(node: Any, part: str, where: str) -> Any:
    if isinstance(node, dict):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        return child
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    raise _not_settable(part, where)


def _not_settable(key: str, where: str) -> ConfigError:
    return ConfigError(
        Problem(
            path=where,
            message=f"'{key}' is not a mapping key or list index of base_run",
            expected="a dotted path into base_run, e.g. algorithm.params.learning_rate",
        )
    )
