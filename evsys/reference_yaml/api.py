"""The reference's Python entry points on evsys's machinery: load, validate, plan, run, migrate.

Every one goes through :class:`~evsys.experiment.Experiment` with the file's translation (see
:mod:`evsys.reference_yaml.translate`): the same composition, pre-flight of every arm, failure
isolation and sweep records as ``python -m evsys``. Problems are reported against the file: the
reference's key (``run.algorithm.params.lerning_rate``) and ``file:line``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from evsys.errors import ConfigError, Problem
from evsys.experiment import Experiment
from evsys.experiment.experiment import EXPERIMENT_FILE_READERS
from evsys.reference_yaml import source
from evsys.reference_yaml.migration import experiment_file
from evsys.reference_yaml.source import ReferenceConfig
from evsys.reference_yaml.translate import Translation, translate

if TYPE_CHECKING:
    from evsys.experiment import ExperimentResult
    from evsys.sweep.plan import Arm

BASE_CONFIG = "base"
"""The primary config a reference file is composed on: every group's default, no experiment."""
# Top-level keys of evsys's config that are the experiment's, not a run's.
_EXPERIMENT_KEYS = frozenset(
    ["version", "description", "data_store", "log_store", "metadata", "parent_experiment_id"]
    + ["continual", "deploy"]
)


def load_yaml(path: str | Path) -> ReferenceConfig:
    """Read a reference YAML file and check its root; raises ConfigError naming file and line.
    Each run is checked when it is planned (:func:`validate_yaml` with ``deep``, or run)."""
    return source.read(path)


class ReferenceExperiment(Experiment):
    """An :class:`~evsys.experiment.Experiment` made from a reference file: its plan's problems
    name the file's keys and lines."""

    def __init__(
        self, config: ReferenceConfig, overrides: list[str] | tuple[str, ...] = (), **options: Any
    ):
        from evsys.preflight import is_sweep_override

        translation = _translation(config)
        options.setdefault("config_name", BASE_CONFIG)
        multirun = translation.multirun or any(is_sweep_override(line) for line in overrides)
        super().__init__(translation.overrides(overrides), multirun=multirun, **options)
        self.reference = config
        self.translation = translation

    def plan(self) -> list[Arm]:
        config = self.reference
        try:
            arms = super().plan()
        except ConfigError as exc:
            raise located(exc, config) from None
        # Each of `runs` is one block of consecutive arms (its cells of other axes, its repeats).
        block = max(1, len(arms) // len(config.runs)) if config.runs else 1
        for arm in arms:
            arm.problems = locate(arm.problems, config, arm.index // block)
        return arms


@EXPERIMENT_FILE_READERS.register("reference")
def experiment_from_yaml(
    path_or_config: str | Path | ReferenceConfig,
    overrides: list[str] | tuple[str, ...] = (),
    **options: Any,
) -> ReferenceExperiment:
    """The experiment that runs a reference file (options: see ``Experiment.__init__``);
    ``overrides`` are Hydra overrides applied after the file."""
    return ReferenceExperiment(_config(path_or_config), overrides, **options)


def plan(
    path_or_config: str | Path | ReferenceConfig,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    deep: bool = True,
    **options: Any,
) -> list[Arm]:
    """Every arm the file runs, named and validated; an arm's ``problems`` name the file's key and
    line. Without ``deep``: the first cell of a matrix only, and each of ``runs`` once."""
    config = _config(path_or_config)
    if not deep:
        config = _first_cells(config)
    return experiment_from_yaml(config, overrides, **options).plan()


def validate_yaml(
    path_or_config: str | Path | ReferenceConfig, *, deep: bool = False
) -> list[Problem]:
    """Every problem of the file; empty when it runs. ``deep`` validates every arm of a sweep."""
    from evsys.sweep.plan import bad_arms

    try:
        arms = plan(path_or_config, deep=deep)
    except ConfigError as exc:
        return exc.problems
    return [problem for arm in bad_arms(arms) for problem in arm.problems]


def run_experiment(
    path_or_config: str | Path | ReferenceConfig,
    output_dir: str | Path | None = None,
    **options: Any,
) -> ExperimentResult:
    """Run the file in this process, every arm validated first (ConfigError naming the file's
    keys: nothing ran); a failing arm is recorded and the others run. ``output_dir``: the run or
    sweep directory (None: under the file's ``output_dir``); options: see ``Experiment``."""
    return experiment_from_yaml(path_or_config, **options).run(output_dir)


def dump_yaml(config: ReferenceConfig, path: str | Path | None = None) -> str:
    """The config in the reference's format (defaults left out); written to ``path`` if given."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    data = {"version": config.version, **data}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if path is not None:
        from evsys.files import write_text_atomically

        write_text_atomically(Path(path), text)
    return text


def migrate(path_or_config: str | Path | ReferenceConfig) -> str:
    """The equivalent evsys experiment file (``experiments/<name>.yaml``), as text."""
    config = _config(path_or_config)
    origin = config.path.name if config.path is not None else "a reference config"
    return experiment_file(_translation(config), origin=origin)


# -- problems against the file ------------------------------------------------------------------


def located(exc: ConfigError, config: ReferenceConfig, run_index: int | None = None) -> ConfigError:
    from evsys.report import problems_header

    problems = locate(exc.problems, config, run_index)
    subject = str(config.path) if config.path is not None else "the reference config"
    return ConfigError(problems, header=exc.header or problems_header(len(problems), subject))


def locate(
    problems: list[Problem], config: ReferenceConfig, run_index: int | None = None
) -> list[Problem]:
    """Problems of evsys's composed config, said of the file: its key and ``file:line``. One
    problem per key (an unknown kind is reported by its group and by its schema)."""
    out: list[Problem] = []
    seen = set()
    for problem in problems:
        key = reference_key(problem, config, run_index)
        if key in seen:
            continue
        seen.add(key)
        where = config.where(key)
        out.append(dataclasses.replace(problem, path=key, source=where or problem.source))
    return out


def reference_key(problem: Problem, config: ReferenceConfig, run_index: int | None) -> str:
    """The file's key for the problem's path in evsys's config."""
    path = problem.path
    if problem.message.startswith("unknown option") and "/" not in path:
        path += ".kind"  # a group option: the file named it as the block's kind
    head = re.split(r"[.\[]", path, maxsplit=1)[0]
    if not path:
        return path
    if head == "hydra":
        return _hydra_key(path, config)
    if head == "metadata":
        return _metadata_key(path, config)
    if head in _EXPERIMENT_KEYS:
        return path
    if config.run is not None:
        return f"run.{path}"
    if config.matrix is not None:
        for axis in config.matrix.axes:
            if path == axis or path.startswith((axis + ".", axis + "[")):
                return f"matrix.axes.{axis}"
        return f"matrix.base_run.{path}"
    if run_index is None:
        return f"runs.{path}"
    return f"runs[{run_index}].{path}"


def _hydra_key(path: str, config: ReferenceConfig) -> str:
    if path.startswith(("hydra.run.dir", "hydra.sweep.dir")):
        return "output_dir"
    if path.startswith("hydra.sweeper.name_template"):
        return "matrix.name_template" if config.matrix is not None else "name"
    if path.startswith("hydra.sweeper.n_repeats"):
        return "n_repeats"
    if path.startswith("hydra.sweeper.arms"):
        return "runs"
    return path


def _metadata_key(path: str, config: ReferenceConfig) -> str:
    """``metadata.notes.budget`` is ``metadata.budget`` in the file (evsys keeps it in notes)."""
    prefix = "metadata.notes."
    if path.startswith(prefix):
        key = re.split(r"[.\[]", path[len(prefix) :], maxsplit=1)[0]
        if key in config.metadata and key != "notes":
            return "metadata." + path[len(prefix) :]
    return path


# -- helpers ------------------------------------------------------------------------------------


def _config(path_or_config: str | Path | ReferenceConfig) -> ReferenceConfig:
    if isinstance(path_or_config, ReferenceConfig):
        return path_or_config
    return load_yaml(path_or_config)


def _translation(config: ReferenceConfig) -> Translation:
    from evsys.report import problems_header

    try:
        return translate(config)
    except ConfigError as exc:  # its problems name the file's keys already
        problems = [dataclasses.replace(p, source=config.where(p.path)) for p in exc.problems]
        subject = str(config.path) if config.path is not None else "the reference config"
        raise ConfigError(problems, header=problems_header(len(problems), subject)) from None


def _first_cells(config: ReferenceConfig) -> ReferenceConfig:
    """The config with one cell per matrix axis and no repeats: what a shallow check composes."""
    update: dict[str, Any] = {"n_repeats": 1}
    if config.matrix is not None:
        axes = {key: values[:1] for key, values in config.matrix.axes.items()}
        update["matrix"] = config.matrix.model_copy(update={"axes": axes})
    first = config.model_copy(update=update)
    first._path, first._lines = config._path, config._lines
    return first
