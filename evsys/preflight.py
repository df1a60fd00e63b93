"""What every entry point checks before anything is written: one mechanism, so that ``evsys
validate``, ``evsys plan``, a single run and ``--multirun`` (with any launcher) agree on what is
valid.

A single run is its composed config, validated, plus Hydra's settings around it; a sweep is every
arm, validated, plus the same settings. Hydra's settings are the sweeper's (``n_repeats``,
``name_template``, the sweep expressions of ``params`` and ``paired``), the launcher's, and the
output directories (``hydra.run.dir``, ``hydra.sweep.dir``). Each check raises one
:class:`~evsys.errors.ConfigError` with every problem it found; nothing here writes a file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from evsys.compose.compose import (
    Composition,
    compose,
    validate_composition,
)
from evsys.compose.override_lines import parse_line
from evsys.compose.resolution import first_line
from evsys.config import ExperimentConfig
from evsys.errors import ConfigError, Problem
from evsys.output_dirs import dir_problems
from evsys.paths import primary_config_name
from evsys.sweep.arm_nodes import check_arm_nodes, single_run_node_problems
from evsys.sweep.plan import (
    Arm,
    SweepAxes,
    bad_arms,
    enumerate_arms,
    preflight,
    settings_problems,
    template_problems,
)

# The sweepers' targets were defined here first; they stay importable from this module.
from evsys.sweepers import EVOLVE_SWEEPER as EVOLVE_SWEEPER
from evsys.sweepers import EVSYS_SWEEPER, SWEEPER_PREFLIGHTS

DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir")
# evsys's sweeper settings; another sweeper has settings of its own, which it checks itself.
_EVSYS_SWEEPER_KEYS = ("params", "paired", "arms", "n_repeats", "base_seed", "name_template")
_NO_SWEEP = {
    "params": {},
    "paired": [],
    "arms": [],
    "n_repeats": 1,
    "base_seed": None,
    "name_template": None,
}


@dataclass
class HydraSettings:
    """Hydra's settings of one composed config, read and checked."""

    axes: SweepAxes
    name_template: str | None
    dirs: dict[str, str]
    """``hydra.run.dir`` and ``hydra.sweep.dir``, resolved."""
    stamped: dict[str, bool]
    """Whether each directory is named after the clock (``${now:…}``): a new one each time."""
    launcher: Any = None
    """The launcher, when it checks settings and arms of its own (evsys's launchers do)."""
    unresolved: list[Problem] = field(default_factory=list)
    """Directories that do not resolve, usually for a problem of the config they are named
    after (``name``): reported only when the config itself has none."""
    foreign_sweeper: str | None = None
    """Another sweeper than evsys's: it proposes the arms as it goes, so they cannot be planned
    here; evsys checks sample arms when it starts (see :mod:`evsys.sweep.foreign`)."""


def check_run(
    overrides: list[str] | tuple[str, ...], config_name: str | None = None
) -> tuple[Composition, ExperimentConfig, HydraSettings]:
    """A single run's config and settings; one ConfigError with every problem of both."""
    composition = compose(overrides, config_name)
    problems: list[Problem] = []
    config = None
    try:
        config = validate_composition(composition)
        problems += single_run_node_problems(config.model_dump(mode="json"))
    except ConfigError as exc:
        problems += exc.problems
    settings = None
    if composition.hydra is not None:
        settings, found = read_hydra_settings(composition)
        problems += [p for p in found if p not in problems]
        if settings is not None:
            problems += _sweeper_problems(settings, composition.config)
            if not problems:  # a broken config breaks the directories named after it: once
                problems += settings.unresolved
            if not problems and (check := _sweeper_check(settings)):
                problems += _problems_of(check, overrides, config_name)
    if problems:
        raise ConfigError(problems)
    assert config is not None and settings is not None
    return composition, config, settings


def _sweeper_check(settings: HydraSettings) -> Callable[..., None] | None:
    """The check a foreign sweeper registered for its own settings (an evolving config's search
    space), run whichever way the sweep is started; None: it brings none."""
    foreign = settings.foreign_sweeper
    return SWEEPER_PREFLIGHTS.get(foreign) if foreign and foreign in SWEEPER_PREFLIGHTS else None


def _problems_of(
    check: Callable[..., None], overrides: list[str] | tuple[str, ...], config_name: str | None
) -> list[Problem]:
    try:
        check(overrides, config_name)
    except ConfigError as exc:
        return exc.problems
    return []


def plan_sweep(
    overrides: list[str] | tuple[str, ...], config_name: str | None = None
) -> tuple[list[Arm], HydraSettings]:
    """Every arm of ``--multirun OVERRIDES``, named and validated (an arm's ``problems`` say why
    it cannot run). Raises ConfigError when the sweep itself is wrong: its grammar, Hydra's
    settings, an empty sweep."""
    settings = hydra_settings(overrides, config_name)
    if check := _sweeper_check(settings):  # evolve's search space, proposer and objectives
        check(overrides, config_name)
    if settings.foreign_sweeper:
        return [], settings
    task = [line for line in overrides if not is_hydra_override(line)]
    arms = plan_arms(task, settings.axes, settings.name_template, config_name)
    if settings.unresolved and not bad_arms(arms):  # else the arms say what broke them
        raise ConfigError(settings.unresolved)
    check_arms = getattr(settings.launcher, "check_arms", None)
    if check_arms is not None and not bad_arms(arms):  # e.g. enough GPU slots for the GPU arms
        check_arms([(arm.name, arm.resolved) for arm in arms])
    if not bad_arms(arms):  # an arm across nodes runs only as a Slurm job of as many nodes
        check_arm_nodes(settings.launcher, [(arm.name, arm.resolved) for arm in arms])
    return arms, settings


def hydra_settings(
    overrides: list[str] | tuple[str, ...], config_name: str | None = None
) -> HydraSettings:
    """Hydra's settings of the config the sweep's fixed (not swept) overrides compose; raises
    ConfigError for every problem in them. The arms' own problems are the arms' to report."""
    fixed = [line for line in overrides if not is_sweep_override(line)]
    swept_hydra = [line for line in overrides if is_hydra_override(line) and line not in fixed]
    composition = compose(fixed, config_name)
    # Hydra's own settings cannot be swept: the single-run check reports those lines.
    hydra_lines = compose(swept_hydra, config_name).problems if swept_hydra else []
    if composition.hydra is None:  # the defaults list failed: every arm reports why
        return HydraSettings(SweepAxes(), None, {}, {})
    settings, problems = read_hydra_settings(composition)
    problems = [p for p in composition.problems if _is_hydra_path(p.path)] + problems
    problems = [p for p in hydra_lines if _is_hydra_path(p.path)] + problems
    if problems:
        raise ConfigError(problems)
    assert settings is not None
    return settings


_planned: dict[tuple[Any, ...], list[Arm]] = {}


def plan_arms(
    arguments: list[str], axes: SweepAxes, name_template: str | None, config_name: str | None
) -> list[Arm]:
    """Every arm, named and validated. Raises ConfigError when the axes themselves are wrong.

    The arms of the last plan are kept: ``python -m evsys --multirun`` plans before Hydra starts
    and the sweeper Hydra starts asks for the same plan again.
    """
    from pathlib import Path

    from evsys import registry

    config_name = config_name or primary_config_name()
    key = (
        tuple(arguments),
        repr(axes),
        name_template,
        config_name,
        Path.cwd(),
        registry.generation(),
    )
    if key not in _planned:
        arms = preflight(
            enumerate_arms(arguments, axes), name_template=name_template, config_name=config_name
        )
        _planned.clear()
        _planned[key] = arms
    return _planned[key]


def read_hydra_settings(composition: Composition) -> tuple[HydraSettings | None, list[Problem]]:
    """The sweeper's settings and the output directories of ``composition``, and their problems."""
    assert composition.hydra is not None
    problems: list[Problem] = []
    full = _with_hydra(composition)
    target = OmegaConf.select(full, "hydra.sweeper._target_", throw_on_resolution_failure=False)
    foreign = target if target != EVSYS_SWEEPER else None
    sweeper = (
        dict(_NO_SWEEP)
        if foreign
        else {key: _resolved(full, f"hydra.sweeper.{key}", problems) for key in _EVSYS_SWEEPER_KEYS}
    )
    dirs, stamped, unresolved = {}, {}, []
    for key in DIR_KEYS:
        value = _resolved(full, key, unresolved, what="the output directory")
        if value is not _UNRESOLVED:
            problems += dir_problems(key, value)
            dirs[key] = value
            stamped[key] = "${now:" in str(_raw(full, key))
    launcher, found = _launcher(full.hydra)  # its values may read ${name}
    problems += found
    if any(v is _UNRESOLVED for v in sweeper.values()) or problems:
        return None, problems
    axes = SweepAxes(
        params={str(k): str(v) for k, v in (sweeper["params"] or {}).items()},
        paired=[{str(k): str(v) for k, v in axis.items()} for axis in sweeper["paired"] or []],
        arms=[[str(line) for line in arm] for arm in sweeper["arms"] or []],
        n_repeats=sweeper["n_repeats"],
        base_seed=sweeper["base_seed"],
    )
    problems += settings_problems(axes)
    settings = HydraSettings(
        axes, sweeper["name_template"], dirs, stamped, launcher, unresolved, foreign
    )
    return (None if problems else settings), problems


def _sweeper_problems(settings: HydraSettings, resolved: dict[str, Any]) -> list[Problem]:
    """In a single run, the sweep settings it carries are still checked: the same config is
    then valid or not whichever way it is started."""
    problems = template_problems(settings.name_template, resolved)
    single = SweepAxes(
        params=settings.axes.params, paired=settings.axes.paired, arms=settings.axes.arms
    )
    try:
        enumerate_arms([], single)
    except ConfigError as exc:
        problems += [p for p in exc.problems if p.path != "" or "no arm" not in p.message]
    return problems


_UNRESOLVED = object()


def _with_hydra(composition: Composition) -> DictConfig:
    """The composed config with its ``hydra`` node, as Hydra resolves it (``${now:…}``; composing
    left ``${hydra:…}`` reading this composition's node)."""
    from hydra.core.utils import setup_globals

    setup_globals()
    hydra = {  # the parts read here and what they may interpolate; the rest is big
        key: composition.hydra._get_node(key)._value()  # type: ignore[union-attr]
        for key in _HYDRA_PARTS
        if key in composition.hydra
    }
    hydra = OmegaConf.to_container(OmegaConf.create(hydra), resolve=False)
    # The config is resolved already; only the top-level keys these parts interpolate are needed
    # (wrapping the whole config in OmegaConf nodes costs more than everything else here).
    read = set(_TOP_LEVEL_REFERENCE.findall(str(hydra)))
    config = {key: value for key, value in composition.config.items() if key in read}
    return OmegaConf.create({**config, "hydra": hydra})


_HYDRA_PARTS = ("run", "sweep", "sweeper", "launcher", "job", "mode")
_TOP_LEVEL_REFERENCE = re.compile(r"\$\{\s*([A-Za-z_]\w*)\s*[.}\[]")


def _resolved(
    full: DictConfig, key: str, problems: list[Problem], what: str = "the setting"
) -> Any:
    try:
        value = OmegaConf.select(full, key, throw_on_missing=True, throw_on_resolution_failure=True)
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        problems.append(
            Problem(
                path=key,
                message=f"cannot resolve {what}: {first_line(exc)}",
                value=_raw(full, key),
            )
        )
        return _UNRESOLVED


def _raw(full: DictConfig, key: str) -> Any:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(full, parent, throw_on_resolution_failure=False)
    try:
        return node._get_node(leaf)._value() if node is not None else None
    except Exception:
        return None


def _launcher(hydra: DictConfig) -> tuple[Any, list[Problem]]:
    """The launcher, when it checks its own settings (evsys's launchers do), and their problems:
    the values, not yet the machine's capacity, which :func:`plan_sweep` checks against the arms."""
    target = OmegaConf.select(hydra, "launcher._target_", throw_on_resolution_failure=False)
    if not isinstance(target, str):
        return None, []
    from hydra.utils import get_class, instantiate

    try:
        launcher_class = get_class(target)
    except Exception as exc:
        return None, [
            Problem(path="hydra.launcher._target_", message=first_line(exc), value=target)
        ]
    if not hasattr(launcher_class, "settings_problems"):
        return None, []
    try:
        launcher = instantiate(hydra.launcher)
    except Exception as exc:
        return None, [Problem(path="hydra.launcher", message=first_line(exc), value=target)]
    return launcher, list(launcher.settings_problems())


def is_hydra_override(line: str) -> bool:
    """Whether an override line sets Hydra's own config (``hydra.…``, ``hydra/…=``), as Hydra
    decides it; those are never an arm's overrides."""
    key = line.lstrip("+~").partition("=")[0].strip()
    return key.startswith(("hydra.", "hydra/"))


def is_sweep_override(line: str) -> bool:
    """Whether an override line sweeps (``seed=1,2``, ``range(…)``, ``choice(…)``, ``glob(…)``)."""
    try:
        return parse_line(line).is_sweep_override()
    except Exception:
        return False  # planning the arms reports the unparsable line


def _is_hydra_path(path: str) -> bool:
    return path == "hydra" or path.startswith(("hydra.", "hydra/"))


def quote_override_value(text: str) -> str:
    """``text`` as a quoted value of Hydra's override grammar that reads back as exactly ``text``:
    quotes and the backslashes before them (or at the end) escaped, ``${`` kept literal."""
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text)
    return "'" + escaped.replace("'", "\\'").replace("${", "\\${") + "'"
