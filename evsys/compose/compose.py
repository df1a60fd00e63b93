"""Compose a config the way Hydra does, but collect every problem instead of stopping at the first.

Hydra stops at the first unknown override key or group option. Before a run starts (and for
``evsys validate``), evsys composes the same defaults list with Hydra's own loader, but leniently:
unknown group options are reported and skipped, override keys that do not exist are still set
(so the schema can name them, with a "did you mean"), and every value remembers where it came
from — a command-line override, or which conf file and group option — so a report can say so.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.config_repository import IConfigRepository
from hydra._internal.defaults_list import create_defaults_list
from hydra._internal.utils import create_config_search_path
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from evsys import paths, registry
from evsys.compose import stored
from evsys.compose.defaults_merge import merge_defaults
from evsys.compose.nodes import ensure_published
from evsys.compose.override_lines import (
    ConfigGroups,
    apply_override_lines,
    group_choice_is_known,
    parse_overrides,
)
from evsys.compose.resolution import defaults_error, resolve_config
from evsys.compose.resolvers import register_resolvers
from evsys.compose.sweep_fast_path import interpolated_paths, patch_resolved
from evsys.config import ExperimentConfig
from evsys.errors import ConfigError, Problem
from evsys.output_dirs import name_problems
from evsys.paths import config_dir, experiments_dir, primary_config_name
from evsys.validation import validate_experiment


def compose_and_validate(
    overrides: list[str] | tuple[str, ...] = (), config_name: str | None = None
) -> tuple[Composition, ExperimentConfig]:
    """Compose leniently, then validate; one :class:`ConfigError` lists every problem of both."""
    composition = compose(overrides, config_name)
    return composition, validate_composition(composition)


def validate_composition(composition: Composition) -> ExperimentConfig:
    """The validated config, or one ConfigError with the composition's and the schema's problems."""
    if composition.hydra is None:  # the defaults list itself failed: nothing to validate
        raise ConfigError(composition.problems)
    problems: list[Problem] = []
    try:
        config = validate_experiment(
            composition.config, source_of=composition.source_of, extra_problems=composition.problems
        )
    except ConfigError as exc:
        problems = exc.problems
    # A key the schema accepts but the composed config lacks: Hydra itself would refuse the
    # override without `+` (a key inside a free-form dict such as backend.params.trl_args).
    reported = {p.path.replace("[", ".").replace("]", "") for p in problems}
    for key, line in composition.added:
        if key not in reported:
            problems.append(
                Problem(
                    path=key,
                    message="not a key of the composed config; Hydra adds keys only with '+'",
                    value=line,
                    expected=f"+{line}",
                    source=f"override '{line}'",
                )
            )
    # The name names the run's directory (outputs/runs/<date>/<time>_<name>): not a path.
    problems += [p for p in name_problems(composition.config.get("name")) if p not in problems]
    if problems:
        raise ConfigError(problems)
    return config


@dataclass
class Composition:
    """A composed config, where each of its values came from, and what went wrong composing it."""

    config: dict[str, Any]
    """Resolved, without the ``hydra`` node and without values still missing (``???``)."""
    sources: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    choices: dict[str, str | None] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    hydra: DictConfig | None = None
    added: list[tuple[str, str]] = field(default_factory=list)
    """(key, override) for overrides without ``+`` that added a key Hydra would refuse."""

    def source_of(self, path: str) -> str | None:
        """Where the value at ``path`` (or its nearest composed parent) came from."""
        key = path.replace("[", ".").replace("]", "")
        while key:
            if key in self.sources:
                return self.sources[key]
            # A dict the schema wanted as a list element (or a parent of values from one place).
            inside = {v for k, v in self.sources.items() if k.startswith(key + ".")}
            if len(inside) == 1:
                return inside.pop()
            key = key.rpartition(".")[0]
        return None


def compose(
    overrides: list[str] | tuple[str, ...] = (), config_name: str | None = None
) -> Composition:
    """Compose ``config_name`` with ``overrides``, leniently (see the module docstring)."""
    problems: list[Problem] = []
    group_overrides, key_overrides = split_overrides(overrides, problems)
    defaults = compose_defaults(group_overrides, config_name)
    return apply_overrides(defaults, key_overrides, overrides, problems)


@dataclass
class Defaults:
    """A defaults list merged: what every arm with the same group choices shares."""

    cfg: DictConfig | None
    """The app's config, without the ``hydra`` node; None when the defaults list failed."""
    hydra: DictConfig | None
    """``{hydra: ...}``: Hydra's own node, kept apart so arms copy it only when they change it."""
    sources: dict[str, str]
    problems: list[Problem]
    choices: dict[str, str | None]
    config_roots: list[str] = field(default_factory=list)
    """The config folders it was read from (with a primary config's ``hydra.searchpath``)."""
    _resolved: tuple[dict[str, Any], list[Problem], set[str] | None] | None = None

    def resolved(self) -> tuple[dict[str, Any], set[str] | None]:
        """The resolved config with no value overrides, and the paths its interpolations read
        (None when some interpolation is relative, so any override may change it)."""
        if self._resolved is None:
            assert self.cfg is not None and self.hydra is not None
            _use_hydra_config(self.hydra)
            problems: list[Problem] = []
            config = resolve_config(copy.deepcopy(self.cfg), self.sources, problems)
            self._resolved = (config, problems, interpolated_paths(self.cfg))
        config, _, reads = self._resolved
        return config, reads

    def resolve_problems(self) -> list[Problem]:
        self.resolved()
        return list(self._resolved[1]) if self._resolved else []


def split_overrides(
    lines: list[str] | tuple[str, ...],
    problems: list[Problem],
    groups: ConfigGroups | None = None,
) -> tuple[list[Override], list[Override]]:
    """Parse ``lines`` into group choices (``algorithm=rl``) and value overrides (``seed=3``).

    Unparsable lines and unknown group options become problems and are left out. ``groups``:
    the config groups to classify them by (:func:`config_groups`; looked up when not given).
    """
    register_resolvers()
    parsed = parse_overrides(lines, problems)
    if groups is None and parsed:
        groups = config_groups()
    chosen, keys = [], []
    for override in parsed:
        value = override.value()
        assert groups is not None
        if groups.group_exists(override.key_or_group) and not isinstance(value, dict):
            if group_choice_is_known(override, groups, problems):
                chosen.append(override)
        else:
            keys.append(override)
    return chosen, keys


@dataclass(frozen=True)
class GroupIndex:
    """Every config group on the search path, with its options: a :class:`ConfigGroups` read from
    the cache on disk, which spares a process Hydra's plugin scan (see :mod:`.stored`)."""

    options: dict[str, list[str]]

    def group_exists(self, config_path: str) -> bool:
        return config_path in self.options

    def get_group_options(self, group_name: str) -> list[str]:
        return list(self.options.get(group_name, []))


def config_groups() -> ConfigGroups:
    """The config groups: the repository of this process's loader once there is one (it sees
    every file as it is now), else the stored index while nothing it was built from changed."""
    ensure_published()
    if _loader_key() in _loaders or registry.generation() != 0:
        return config_loader().repository
    index = stored.load("groups", ("groups",))
    if isinstance(index, GroupIndex):
        return index
    loader = config_loader()
    index = GroupIndex(_group_options(loader.repository, ""))
    stored.save("groups", ("groups",), index, stored.config_roots(_search_path(loader)))
    return loader.repository


def _group_options(repository: IConfigRepository, parent: str) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for name in repository.get_group_options(parent, ObjectType.GROUP):
        group = f"{parent}/{name}" if parent else name
        options[group] = repository.get_group_options(group, ObjectType.CONFIG)
        options.update(_group_options(repository, group))
    return options


def _search_path(loader: ConfigLoaderImpl) -> list[Any]:
    return list(loader.get_search_path().get_path())


_DEFAULTS_CACHE_SIZE = 16
_defaults_cache: dict[tuple[Any, ...], Defaults] = {}


def compose_defaults(group_overrides: list[Override], config_name: str | None = None) -> Defaults:
    """Merge the defaults list these group choices select, remembering where values came from.

    Merging is most of what composing costs; the result is kept for later calls with the same
    choices while no config file changed (``validate`` then ``plan`` then the run, in one process).
    Callers never modify it: arms copy what they change.
    """
    config_name = config_name or primary_config_name()
    key = (
        config_name,
        tuple(o.input_line for o in group_overrides),
        registry.generation(),
        _config_files_state(),
    )
    if key not in _defaults_cache:
        if len(_defaults_cache) >= _DEFAULTS_CACHE_SIZE:
            del _defaults_cache[next(iter(_defaults_cache))]
        _defaults_cache[key] = _stored_defaults(group_overrides, config_name)
    return _defaults_cache[key]


def _stored_defaults(group_overrides: list[Override], config_name: str) -> Defaults:
    """The merged defaults list from the cache on disk (see :mod:`.stored`), else merged now and
    stored. Only while this process registered nothing of its own: its options are its own."""
    ensure_published()  # the stamp covers the registry's options as published
    if registry.generation() != 0:
        return _merge_defaults_list(group_overrides, config_name)
    key = ("defaults", config_name, tuple(o.input_line for o in group_overrides))
    kept = stored.load("defaults", key)
    if isinstance(kept, Defaults):
        return kept
    defaults = _merge_defaults_list(group_overrides, config_name)
    if defaults.cfg is not None:  # a failed defaults list is reported, not kept
        stored.save("defaults", key, defaults, defaults.config_roots)
    return defaults


def _config_files_state() -> tuple[Any, ...]:
    """Every config file on the search path, with its size and modification time."""
    cwd = Path.cwd().resolve()
    roots = [config_dir(), experiments_dir(), cwd / "conf", cwd / "experiments"]
    return (str(cwd), *stored.files_state([str(root) for root in roots]))


def _merge_defaults_list(group_overrides: list[Override], config_name: str) -> Defaults:
    loader = config_loader()
    lines = [o.input_line for o in group_overrides]
    try:
        # As Hydra's own loader does: one caching repository for the defaults list and the merge.
        parsed, repo = loader._parse_overrides_and_create_caching_repo(config_name, lines)
        defaults = create_defaults_list(
            repo=repo,
            config_name=config_name,
            overrides_list=parsed,
            prepend_hydra=True,
            skip_missing=False,
        )
    except (HydraException, OmegaConfBaseException, ValueError, yaml.YAMLError) as exc:
        problem = Problem(path="defaults", message=defaults_error(exc))
        return Defaults(cfg=None, hydra=None, sources={}, problems=[problem], choices={})
    try:
        cfg, sources = merge_defaults(loader, repo, defaults.defaults)
    except ConfigError as exc:  # a config file sets a key its schema lacks (hydra.sweeper.*)
        return Defaults(cfg=None, hydra=None, sources={}, problems=exc.problems, choices={})
    with open_dict(cfg):
        hydra = OmegaConf.create({"hydra": cfg.pop("hydra")})
    with open_dict(hydra.hydra):
        hydra.hydra.runtime.choices.update(defaults.overrides.known_choices)
    # Unlike Hydra, let an override add a key that does not exist: the schema then reports it
    # with its closest valid name. Hydra's own node stays strict: its schema is Hydra's.
    OmegaConf.set_struct(cfg, False)
    OmegaConf.set_struct(hydra, True)
    return Defaults(
        cfg=cfg,
        hydra=hydra,
        sources=sources,
        problems=[],
        choices=dict(defaults.overrides.known_choices),
        config_roots=stored.config_roots(repo.get_sources()),
    )


def apply_overrides(
    defaults: Defaults,
    key_overrides: list[Override],
    lines: list[str] | tuple[str, ...],
    problems: list[Problem] | None = None,
) -> Composition:
    """Apply value overrides to a copy of ``defaults`` and resolve: one arm's composition."""
    problems = [*(problems or []), *defaults.problems]
    if defaults.cfg is None or defaults.hydra is None:
        return Composition(config={}, problems=problems, overrides=list(lines))
    base, reads = defaults.resolved()
    patched = patch_resolved(base, reads, defaults.sources, key_overrides)
    if patched is not None:
        config, sources = patched
        return Composition(
            config=config,
            sources=sources,
            problems=problems + defaults.resolve_problems(),
            choices=defaults.choices,
            overrides=list(lines),
            hydra=defaults.hydra.hydra,
        )
    sources = dict(defaults.sources)
    app_overrides = [o for o in key_overrides if o.key_or_group.split(".")[0] != "hydra"]
    hydra_overrides = [o for o in key_overrides if o not in app_overrides]
    cfg = copy.deepcopy(defaults.cfg)
    added = apply_override_lines(cfg, app_overrides, sources, problems)
    hydra = defaults.hydra
    if hydra_overrides:
        hydra = copy.deepcopy(hydra)
        # HydraConfig.set_config marks the node it was given read-only, and the copy keeps that.
        OmegaConf.set_readonly(hydra.hydra, False)
        apply_override_lines(hydra, hydra_overrides, sources, problems)
    # Values such as ${hydra:runtime.choices.model} resolve as they do in a real run.
    _use_hydra_config(hydra)
    return Composition(
        config=resolve_config(cfg, sources, problems),
        sources=sources,
        problems=problems,
        choices=defaults.choices,
        overrides=list(lines),
        hydra=hydra.hydra,
        added=added,
    )


_hydra_config_in_use: list[Any] = []  # [the node we set, HydraConfig's copy of it]


def _use_hydra_config(hydra: DictConfig) -> None:
    # HydraConfig copies the node on every set: arms that share it set it once (unless someone
    # else, a run in this process, set another one since).
    current = HydraConfig.instance().cfg
    in_use = _hydra_config_in_use
    if not in_use or in_use[0] is not hydra or in_use[1] is not current:
        HydraConfig.instance().set_config(hydra)
        _hydra_config_in_use[:] = [hydra, HydraConfig.instance().cfg]


def config_loader() -> ConfigLoaderImpl:
    """Hydra's loader over evsys's search path (bundled conf, the project's conf and experiments),
    with every extension registered so far as a group option."""
    ensure_published()
    key = _loader_key()
    if key not in _loaders:
        path = create_config_search_path(str(config_dir()))
        _loaders[key] = ConfigLoaderImpl(config_search_path=path)
    return _loaders[key]


def _loader_key() -> tuple[str, Any]:
    # The search path: the working directory, and which of its conf/, experiments/ exist.
    return str(Path.cwd()), paths.project_config_folders()


_loaders: dict[tuple[str, Any], ConfigLoaderImpl] = {}
