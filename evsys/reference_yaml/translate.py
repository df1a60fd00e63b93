"""A reference YAML file as what evsys runs: Hydra overrides of ``base.yaml`` plus sweep settings.

The reference's file is self-contained: a run says everything about its data, model and eval, and
what it leaves out takes the schema's default. So the translation starts from ``base.yaml`` with
the ``data``, ``eval`` and ``model`` presets removed (``~data``: the schema's defaults remain), picks
the ``algorithm`` and ``backend`` options the run names (their ``Config`` defaults remain), and sets
every field the file gives (``++data={…}``, merged as an experiment file's values are). Then:

- ``run``: one run (a sweep when ``n_repeats`` > 1);
- ``runs``: ``hydra.sweeper.arms``, one explicit arm per run;
- ``matrix``: ``base_run`` is what every arm starts from, ``axes`` are sweep overrides
  (``hydra.sweeper.params`` in a migrated file), ``name_template`` is the sweeper's (default:
  the reference's names);
- ``n_repeats`` / ``base_seed``: the sweeper's;
- ``output_dir``: the root of ``hydra.run.dir`` and ``hydra.sweep.dir``;
- ``data_store`` / ``log_store``: the store options and their params;
- ``metadata``: evsys's ``metadata``; keys it has no field for go to ``metadata.notes``.

The same translation is written as an experiment file by
:func:`evsys.reference_yaml.migration.experiment_file` (``evsys migrate``); composing either gives
the same configs, arm by arm.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from evsys.config import Metadata
from evsys.errors import ConfigError, Problem
from evsys.reference_yaml.source import ReferenceConfig
from evsys.reference_yaml.validation_block import move_validation, per_arm_metadata
from evsys.shorthand_forms import ROUTED_ALGORITHMS

# A run's presets that the reference's run replaces as a whole: their options are removed, so the
# fields the file leaves out take the schema's defaults, not a preset's.
REPLACED_GROUPS = ("data", "eval", "model")
# Groups whose option is the `kind` the file names (a registered extension).
KIND_GROUPS = ("algorithm", "backend")
STORE_GROUPS = ("data_store", "log_store")
# The reference's default backend (its RunConfig.backend default).
REFERENCE_BACKEND = {"kind": "tinker"}
SEED_SUFFIX = "__seed{seed}"
_NOW = "${now:%Y-%m-%d}/${now:%H-%M-%S}"


@dataclass
class Translation:
    """What a reference file runs as; :meth:`overrides` for the command line, or an experiment
    file (:func:`experiment_file`)."""

    source: ReferenceConfig
    groups: dict[str, str | None]
    """Group choices of every arm; None removes the group's preset."""
    content: dict[str, Any]
    """Top-level values every arm sets."""
    axes: dict[str, list[Any]] = field(default_factory=dict)
    """``matrix.axes``: key → its values."""
    arms: list[list[str]] = field(default_factory=list)
    """``runs``: each run's own override lines."""
    n_repeats: int = 1
    base_seed: int | None = None
    name_template: str | None = None
    dirs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What was adapted to evsys, for the person running it."""

    @property
    def multirun(self) -> bool:
        return bool(self.axes or self.arms or self.n_repeats > 1)

    def overrides(self, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Overrides of ``base.yaml`` that run the file, with ``extra`` (the caller's own) applied
        last: a group they choose replaces the file's, in every arm."""
        from evsys.preflight import is_sweep_override

        extra = list(extra)
        # A group the caller chooses replaces the file's choice and the file's values for it.
        chosen = {_group_of(line) for line in extra} - {None}
        fixed = group_lines(self.groups, skip=chosen)
        fixed += [
            f"++{key}={literal(value)}" for key, value in self.content.items() if key not in chosen
        ]
        settings = [f"hydra.{key}={quoted(value)}" for key, value in self.dirs.items()]
        swept = [_key_of(line) for line in extra if is_sweep_override(line)]
        settings += self._sweeper_lines(chosen, swept)
        sweeps = [f"{key}={sweep_expression(values)}" for key, values in self.axes.items()]
        return [*fixed, *settings, *sweeps, *extra]

    def _sweeper_lines(self, chosen: set[str | None], swept: list[str]) -> list[str]:
        lines = []
        if self.arms:  # each arm's lines come first: the caller's overrides apply after them
            arms = [_without_groups(arm, chosen) for arm in self.arms]
            lines.append(f"hydra.sweeper.arms={literal(arms)}")
        if self.n_repeats > 1:
            lines.append(f"hydra.sweeper.n_repeats={self.n_repeats}")
        if self.base_seed is not None:
            lines.append(f"hydra.sweeper.base_seed={self.base_seed}")
        template = self.name_template
        if swept:  # the caller sweeps more: its keys name the arms too, as the reference's would
            template = _reference_names(swept, base=template or "{base}")
        if template is not None:
            lines.append(f"hydra.sweeper.name_template={quoted(template)}")
        return lines


def translate(config: ReferenceConfig) -> Translation:
    """The evsys form of a checked reference config. Raises ConfigError for what has none."""
    problems = _unsupported(config)
    if problems:
        raise ConfigError(problems)
    notes: list[str] = []
    groups, content = _experiment_parts(config)
    translation = Translation(
        source=config,
        groups=groups,
        content=content,
        n_repeats=config.n_repeats,
        base_seed=config.base_seed,
        dirs=_dirs(config),
        notes=notes,
    )
    repeats = config.n_repeats > 1
    if config.run is not None:
        run = _with_continual_data(config.run, config.continual, notes)
        run_groups, run_content = _run_parts(run, "run", notes, repeats)
        move_validation(run_content, content.get("metadata"), "run", notes)
        groups.update(run_groups)
        content.update(run_content)
        translation.name_template = "{base}" + SEED_SUFFIX if repeats else None
    elif config.matrix is not None:
        run_groups, run_content = _run_parts(
            config.matrix.base_run, "matrix.base_run", notes, repeats
        )
        move_validation(run_content, content.get("metadata"), "matrix.base_run", notes)
        groups.update(run_groups)
        content.update(run_content)
        translation.axes = copy.deepcopy(config.matrix.axes)
        template = config.matrix.name_template or _reference_names(list(config.matrix.axes))
        translation.name_template = _with_seed(template, repeats)
    else:
        assert config.runs is not None
        parts = [
            _run_parts(run, f"runs[{index}]", notes, repeats)
            for index, run in enumerate(config.runs)
        ]
        for index, (_, run_content) in enumerate(parts):
            move_validation(run_content, content.get("metadata"), f"runs[{index}]", notes)
        per_arm_metadata(content, [run_content for _, run_content in parts])
        for run_groups, run_content in parts:
            lines = group_lines(run_groups)
            lines += [f"++{key}={literal(value)}" for key, value in run_content.items()]
            translation.arms.append(lines)
        translation.name_template = _with_seed("{base}", repeats)
    return translation


# -- parts of the config ------------------------------------------------------------------------


def _experiment_parts(config: ReferenceConfig) -> tuple[dict[str, str | None], dict[str, Any]]:
    groups: dict[str, str | None] = {group: None for group in REPLACED_GROUPS}
    content: dict[str, Any] = {"version": config.version}
    if config.description:
        content["description"] = config.description
    for store in STORE_GROUPS:
        spec = getattr(config, store)
        if spec is not None:
            if isinstance(spec.get("kind"), str):
                groups[store] = spec["kind"]
            content[store] = spec
    metadata = _metadata(config.metadata)
    if metadata:
        content["metadata"] = metadata
    if config.parent_experiment_id is not None:
        content["parent_experiment_id"] = config.parent_experiment_id
    if config.continual is not None:
        content["continual"] = config.continual
    return groups, content


def _metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The reference's free-form metadata: evsys's fields as they are, anything else kept under
    ``notes`` (budget, client tags, …)."""
    known = {k: copy.deepcopy(v) for k, v in metadata.items() if k in Metadata.model_fields}
    if isinstance(known.get("benchmark"), dict):  # one benchmark or a list, as evsys allows
        known["benchmark"] = [known["benchmark"]]
    others = {k: copy.deepcopy(v) for k, v in metadata.items() if k not in Metadata.model_fields}
    if others:
        notes = known.get("notes") if isinstance(known.get("notes"), dict) else {}
        known["notes"] = {**others, **notes} if notes else others
    return known


def _run_parts(
    run: dict[str, Any], where: str, notes: list[str], repeats: bool
) -> tuple[dict[str, str | None], dict[str, Any]]:
    """A run's group choices and values. A kind group the run leaves out is removed, so that
    validation says it is missing instead of a preset filling it in."""
    run = copy.deepcopy(run)
    run.setdefault("backend", dict(REFERENCE_BACKEND))
    groups: dict[str, str | None] = {}
    for group in KIND_GROUPS:
        spec = run.get(group)
        kind = spec.get("kind") if isinstance(spec, dict) else None
        if group == "algorithm" and isinstance(kind, str) and kind in ROUTED_ALGORITHMS:
            spec["kind"] = recipe = ROUTED_ALGORITHMS[kind]
            notes.append(
                f"{where}.algorithm.kind: {kind} runs as the recipe {recipe!r} (evsys picks "
                "a recipe's engine by the backend)"
            )
            kind = recipe
        groups[group] = kind if isinstance(kind, str) else None
    model, backend = run.get("model"), groups.get("backend")
    if isinstance(model, dict) and model.get("renderer_name") and backend != "tinker":
        notes.append(
            f"{where}.model.renderer_name: only the tinker backend renders with it; the "
            f"{backend} backend renders chats with the model's own chat template"
        )
    if repeats and "seed" in run:
        del run["seed"]
        notes.append(f"{where}.seed: replaced by the repeats' seeds (base_seed, base_seed + 1, …)")
    return groups, run


def _with_continual_data(
    run: dict[str, Any], continual: dict[str, Any] | None, notes: list[str]
) -> dict[str, Any]:
    """The reference ignores a continual run's own ``data`` and lets it out; evsys's schema still
    wants one, so the first stage's stands in (it is not trained on as such)."""
    stages = (continual or {}).get("datasets")
    if "data" in run or not isinstance(stages, list) or not stages:
        return run
    first = stages[0]
    if not isinstance(first, dict):
        return run
    notes.append("run.data: the first continual stage's (the reference leaves it out)")
    return {**run, "data": {k: v for k, v in first.items() if k != "name"}}


def _dirs(config: ReferenceConfig) -> dict[str, str]:
    root = config.output_dir.rstrip("/").removeprefix("./") or "."
    return {
        "run.dir": f"{root}/runs/{_NOW}_{config.name}",
        "sweep.dir": f"{root}/sweeps/{_NOW}_{config.name}",
    }


def _reference_names(keys: list[str], base: str = "{base}") -> str:
    """The reference's arm names without a template: ``{base}__<last key><value>__…``."""
    return "__".join([base, *(f"{key.rsplit('.', 1)[-1]}{{{key}}}" for key in keys)])


def _key_of(line: str) -> str:
    return line.lstrip("+~").partition("=")[0]


def _with_seed(template: str, repeats: bool) -> str:
    return template + SEED_SUFFIX if repeats and "{seed}" not in template else template


def group_lines(groups: dict[str, str | None], skip: set[str | None] = frozenset()) -> list[str]:
    return [
        f"~{group}" if option is None else f"{group}={option}"
        for group, option in groups.items()
        if group not in skip
    ]


def _group_of(line: str) -> str | None:
    """The group an override line chooses (``backend=local``, ``~data``), else None."""
    key = line.lstrip("+~").partition("=")[0]
    groups = (*REPLACED_GROUPS, *KIND_GROUPS, *STORE_GROUPS)
    if key in groups and (line.startswith("~") or not line.partition("=")[2].startswith("{")):
        return key
    return None


def _without_groups(lines: list[str], groups: set[str | None]) -> list[str]:
    """An arm's lines less its choices and values of ``groups`` (the caller chose them)."""
    return [line for line in lines if line.lstrip("+~").partition("=")[0] not in groups]


# -- Hydra's override grammar -------------------------------------------------------------------

_KEY = re.compile(r"^[A-Za-z0-9_\-./]+$")


def literal(value: Any) -> str:
    """``value`` in Hydra's override grammar, reading back as the same value and type. Strings
    are always quoted (``'8'`` stays text); ``${…}`` in them stays an interpolation."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {literal(item)}" for key, item in value.items()) + "}"
    return quoted(str(value))


def sweep_expression(values: list[Any]) -> str:
    """Hydra's choice sweep over ``values`` (``1,8,32``)."""
    return ",".join(literal(value) for value in values)


def quoted(text: str) -> str:
    """A quoted string of Hydra's grammar: quotes and the backslashes before them escaped."""
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text)
    return "'" + escaped.replace("'", "\\'") + "'"


def _unsupported(config: ReferenceConfig) -> list[Problem]:
    """What the file says that evsys cannot do: keys Hydra's grammar cannot spell. Paths are
    the file's keys."""
    raw = config.model_dump(exclude_none=True, exclude={"matrix"})
    if config.matrix is not None:
        raw["matrix"] = {"base_run": config.matrix.base_run}
    return [
        Problem(
            path=path,
            message="a key Hydra's override grammar cannot spell",
            value=path.rpartition(".")[2],
            expected="letters, digits and _ - . / only",
        )
        for path in _unpassable_keys(raw)
    ]


def _unpassable_keys(node: Any, prefix: str = "") -> list[str]:
    """Dict keys below the top level that Hydra's grammar has no spelling for."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if prefix and not _KEY.match(str(key)):
                found.append(path)
            found += _unpassable_keys(value, path)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += _unpassable_keys(item, f"{prefix}[{index}]")
    return found
