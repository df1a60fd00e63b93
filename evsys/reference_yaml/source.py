"""The reference's YAML file, read: its shape checked, and the line of every key remembered.

The file's format is evsys-sdk's ``ExperimentConfig`` (see ``../shared/reference``): a root with
``name``, the stores, ``metadata`` and exactly one of ``run`` / ``runs`` / ``matrix``. Only the root
is checked here; each run is evsys's own config, checked when it is composed (see
:mod:`evsys.reference_yaml.translate`). Values are read as Hydra reads YAML (OmegaConf's loader:
``1e-5`` is a float), so a file means the same here as in an experiment file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from evsys.config import Seed, Strict
from evsys.errors import ConfigError, Problem


class MatrixSpec(Strict):
    """A cartesian sweep: every combination of the axes' values, applied to ``base_run``."""

    base_run: dict[str, Any] = Field(description="The run every cell starts from (a RunConfig).")
    axes: dict[str, list[Any]] = Field(
        min_length=1,
        description="Dotted path into the run → its values; every combination is one arm.",
    )
    name_template: str | None = Field(
        None,
        description="Arm names: {base} is base_run.name, {dotted.key} the arm's value there. "
        "None: {base}__<last key><value>__… for every axis.",
    )

    @model_validator(mode="after")
    def _axes_have_values(self) -> MatrixSpec:
        empty = [key for key, values in self.axes.items() if not values]
        if empty:
            raise ValueError(f"axis {empty[0]!r} has no value: the matrix would have no arm")
        return self


class ReferenceConfig(Strict):
    """The root of a reference YAML file (evsys-sdk's ``ExperimentConfig``)."""

    version: Literal[1] = Field(1, description="Schema version; advisory.")
    name: str = Field(min_length=1, description="The experiment's name; names its directory.")
    description: str = ""
    output_dir: str = Field("./outputs", description="Where the runs and sweeps are written.")
    data_store: dict[str, Any] | None = Field(None, description="{kind, params}; None: local.")
    log_store: dict[str, Any] | None = Field(None, description="{kind, params}; None: jsonl.")
    run: dict[str, Any] | None = Field(None, description="One run.")
    runs: list[dict[str, Any]] | None = Field(None, min_length=1, description="Explicit arms.")
    matrix: MatrixSpec | None = Field(None, description="A cartesian sweep of one base run.")
    n_repeats: int = Field(1, ge=1, description="Every arm over seeds base_seed, base_seed + 1, …")
    base_seed: Seed | None = Field(None, description="First seed of the repeats. None: 0.")
    parent_experiment_id: str | None = Field(None, description="Evolutionary lineage.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form.")
    continual: dict[str, Any] | None = Field(
        None, description="Train the single `run` on these datasets in order."
    )

    _path: Path | None = PrivateAttr(None)
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _names_a_directory(cls, name: str) -> str:
        from evsys.output_dirs import name_problems

        if name_problems(name) or "${" in name:
            raise ValueError(
                "the experiment's name names its directory: no '/', '\\', '..' or '${'"
            )
        return name

    @model_validator(mode="after")
    def _one_kind_of_run(self) -> ReferenceConfig:
        given = [key for key in ("run", "runs", "matrix") if getattr(self, key) is not None]
        if len(given) != 1:
            found = " and ".join(given) if given else "none of them"
            raise ValueError(f"exactly one of run, runs, matrix must be set; found {found}")
        if self.continual is not None and self.run is None:
            raise ValueError("continual trains a single run: give `run`, not runs or matrix")
        return self

    @property
    def path(self) -> Path | None:
        """The file it was read from (None: built in Python)."""
        return self._path

    def where(self, key: str) -> str | None:
        """``file:line`` of ``key`` (``run.algorithm.params.lr``), or of its nearest parent."""
        if self._path is None:
            return None
        while key:
            if key in self._lines:
                return f"{self._path}:{self._lines[key]}"
            key = _parent(key)
        return str(self._path)


def read(path: str | Path) -> ReferenceConfig:
    """Read and check the root of a reference YAML file; one ConfigError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            Problem(path="", message="no such file"), header=_header(path, 1)
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        problem = Problem(path="", message=f"cannot read the file: {exc}")
        raise ConfigError(problem, header=_header(path, 1)) from None
    loader = _loader()
    try:
        node = yaml.compose(text, Loader=loader)
        raw = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            Problem(path="", message=f"not valid YAML: {problem}", source=where),
            header=_header(path, 1),
        ) from None
    lines = _key_lines(node, "") if node is not None else {}
    if not isinstance(raw, dict):
        problem = Problem(
            path="",
            message="the file holds no mapping",
            value=raw,
            expected="a YAML mapping with name and one of run, runs, matrix",
            source=str(path),
        )
        raise ConfigError(problem, header=_header(path, 1))
    return from_dict(raw, path=path, lines=lines)


def from_dict(
    raw: dict[str, Any], *, path: Path | None = None, lines: dict[str, int] | None = None
) -> ReferenceConfig:
    """Check ``raw`` as a reference config; problems name ``path:line`` when known."""
    from evsys.validation import problems_from_validation_error

    try:
        config = ReferenceConfig.model_validate(raw)
    except ValidationError as exc:
        probe = ReferenceConfig.model_construct()
        probe._path, probe._lines = path, lines or {}
        problems = [
            _located(p, probe) for p in problems_from_validation_error(exc, ReferenceConfig)
        ]
        if _is_hydra_experiment(raw):
            problems.append(_hydra_experiment_hint(path, probe))
        raise ConfigError(problems, header=_header(path, len(problems))) from None
    config._path, config._lines = path, lines or {}
    return config


def _located(problem: Problem, config: ReferenceConfig) -> Problem:
    return Problem(**{**problem.__dict__, "source": config.where(problem.path)})


def _header(path: Path | None, count: int) -> str:
    subject = str(path) if path is not None else "the reference config"
    return f"evsys: {subject} has {count} problem{'s' if count != 1 else ''}:"


def _is_hydra_experiment(raw: dict[str, Any]) -> bool:
    return not {"run", "runs", "matrix"} & set(raw) and bool({"defaults", "hydra"} & set(raw))


def _hydra_experiment_hint(path: Path | None, config: ReferenceConfig) -> Problem:
    stem = path.stem if path is not None else "<name>"
    return Problem(
        path="",
        message="this looks like an evsys experiment file, not the reference's format",
        expected=f"run it as `python -m evsys experiment={stem}` from the folder holding "
        "experiments/",
        source=config.where(""),
    )


def _loader() -> type:
    from omegaconf._utils import get_yaml_loader  # the loader Hydra reads conf files with

    return get_yaml_loader()


def _key_lines(node: yaml.Node, prefix: str) -> dict[str, int]:
    """Every key's dotted path (``runs[0].algorithm``) → its line, 1-based."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = f"{prefix}[{index}]"
            lines[key] = item.start_mark.line + 1
            lines.update(_key_lines(item, key))
    return lines


def _parent(key: str) -> str:
    """``runs[0].model.name`` → ``runs[0].model`` → ``runs[0]`` → ``runs`` → ``""``."""
    if key.endswith("]"):
        return key[: key.rindex("[")]
    return key.rpartition(".")[0]
