"""Shorthand forms of the reference's YAML that evsys's schema reads as its own (see
``../shared/reference``): the routed recipe keys (``mock_sft``), a benchmark's single ``model:``
and continual stages without a ``name``. Plain functions over raw values, called by the schema's before-validators, so that a
file means the same in every entry point (``python -m evsys``, ``evsys run FILE``, Python).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

# The reference's backend-specific implementations of a recipe (its registry routes a (recipe,
# backend) pair to one): evsys routes the recipe itself by the run's backend.
ROUTED_ALGORITHMS = {"local_sft": "sft", "mock_sft": "sft", "local_rl": "rl", "mock_rl": "rl"}
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
# Where an unnamed stage's name comes from, most telling first.
_STAGE_NAME_SOURCES = ("dataset_name", "dataset_id", "hf_dataset", "path")


def routed_recipe(value: Any) -> Any:
    """An algorithm block naming a routed key (``{kind: mock_sft}``) as its recipe's block."""
    kind = value.get("kind") if isinstance(value, dict) else None
    if isinstance(kind, str) and kind in ROUTED_ALGORITHMS:  # a kind of another type: refused later
        return {**value, "kind": ROUTED_ALGORITHMS[value["kind"]]}
    return value


def benchmark_models(value: Any) -> Any:
    """A benchmark's ``model: X`` as ``models: [X]`` (the reference reads either); both given is
    left for the schema to refuse as an unknown key."""
    if isinstance(value, dict) and "model" in value and "models" not in value:
        model = value["model"]
        rest = {key: item for key, item in value.items() if key != "model"}
        rest["models"] = [] if model is None else [model]
        return rest
    return value


def named_stages(stages: Any) -> Any:
    """Continual stages, each unnamed one named after its dataset (``dataset_name``, id, hub id or
    the file's stem), else ``stage<i>``; a name taken by another stage gets ``_<i>`` appended."""
    if not isinstance(stages, list):
        return stages
    taken = {stage["name"] for stage in stages if isinstance(stage, dict) and _str_name(stage)}
    named = []
    for index, stage in enumerate(stages, start=1):
        if isinstance(stage, dict) and "name" not in stage:
            name = _stage_name(stage) or f"stage{index}"
            if name in taken:
                name = f"{name}_{index}"
            taken.add(name)
            stage = {"name": name, **stage}
        named.append(stage)
    return named


def _str_name(stage: dict[str, Any]) -> bool:
    # A name of another type is the schema's to refuse; here it only must not break the set.
    return isinstance(stage.get("name"), str)


def _stage_name(stage: dict[str, Any]) -> str | None:
    for key in _STAGE_NAME_SOURCES:
        value = stage.get(key)
        if isinstance(value, str) and value.strip():
            text = PurePosixPath(value).stem if key == "path" else value.rsplit("/", 1)[-1]
            name = _NOT_IN_A_NAME.sub("_", text).strip("_.-")
            if name:
                return name
    return None
