"""What the evolve sweep's proposers and loop share, checked before anything runs.

:func:`prepare` reads the sweep's fixed overrides, search space (pre-flighted at its ends, and
refused where it would vary the machinery: :mod:`evsys.evolve.confine`), objectives and proposer
settings into one :class:`EvolutionContext`; every problem in one ConfigError.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from evsys.errors import ConfigError, Problem
from evsys.evolve.confine import machinery_problems
from evsys.evolve.settings import EvolveSettings, Objective
from evsys.evolve.space import Dimension, check_space, grammar_dimensions, schema_dimensions
from evsys.evolve.store import COMPLETE, EvolveStore, StoredArm
from evsys.sweepers import EVOLVE_SWEEPER, SWEEPER_PREFLIGHTS


@dataclass
class EvolutionContext:
    """What the proposers and the loop share about the sweep."""

    config_name: str | None
    base: list[str]
    """The fixed overrides of every arm."""
    dimensions: list[Dimension]
    objectives: list[Objective]
    population: int
    hypothesis: str = ""
    base_arm: Any = None
    """The fixed overrides' arm, pre-flighted (the sweep's experiment on the dashboard)."""
    store: EvolveStore | None = None
    illegal: int = 0
    """Proposals refused as illegal, in every session of the sweep."""
    dropped: int = 0
    """Legal proposals not launched (repeats, past what was asked), in this session."""
    _schema: dict[str, Any] | None = field(default=None, repr=False)

    def best_arms(self, history: list[StoredArm], count: int) -> list[StoredArm]:
        """Completed arms, best first by the first objective."""
        done = [a for a in history if a.state == COMPLETE and a.values]
        sign = -1.0 if self.objectives[0].direction == "max" else 1.0
        return sorted(done, key=lambda a: sign * a.values[0])[:count]  # type: ignore[index]

    def count_illegal(self, generation: int, proposal: Any, problems: list[str]) -> None:
        self.illegal += 1
        if self.store is not None:
            self.store.add_illegal(generation, proposal, problems)

    def record_dropped(self, generation: int, proposal: Any, reason: str) -> None:
        """A legal proposal not launched (a repeat, past what was asked): recorded, not counted
        as illegal."""
        self.dropped += 1
        if self.store is not None:
            self.store.add_dropped(generation, proposal, reason)

    def schema(self) -> dict[str, Any]:
        """The whole legal space, as ``evsys schema --all`` prints it."""
        if self._schema is None:
            from evsys.compose.schema import full_schema

            self._schema = full_schema()
        return self._schema

    def fingerprint(self, settings: EvolveSettings) -> str:
        """What must not change when the sweep is resumed."""
        payload = {
            "base": self.base,
            "space": [d.to_dict() for d in self.dimensions],
            "objectives": [o.model_dump() for o in self.objectives],
            "proposer": settings.proposer.model_dump(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def prepare(
    settings: EvolveSettings, arguments: list[str], config_name: str | None
) -> EvolutionContext:
    """The sweep's context, checked: fixed overrides, search space (pre-flighted at its ends),
    objectives, proposer settings. Raises one ConfigError with every problem."""
    from evsys.preflight import is_hydra_override, is_sweep_override
    from evsys.sweep.plan import preflight

    task = [a for a in arguments if not is_hydra_override(a)]
    base = [a for a in task if not is_sweep_override(a)]
    swept = [(a, f"override '{a}'") for a in task if is_sweep_override(a)]
    (base_arm,) = preflight([base], config_name=config_name)
    if base_arm.problems:
        raise ConfigError(base_arm.problems)
    assert base_arm.config is not None
    problems: list[Problem] = []
    lines = [(f"{k}={v}", f"hydra.sweeper.params.{k}") for k, v in settings.params.items()]
    dimensions = grammar_dimensions([*lines, *swept], base_arm.resolved, problems)
    dimensions += schema_dimensions(settings.space, base_arm.resolved, problems)
    keys = [d.key for d in dimensions]
    for key in sorted({k for k in keys if keys.count(k) > 1}):
        problems.append(Problem(path=key, message="declared twice in the search space"))
    problems += machinery_problems(dimensions)
    if not dimensions and not problems:  # a proposal may set only the search space's keys
        problems.append(
            Problem(
                path="hydra.sweeper.params",
                message=f"the {settings.proposer.kind} proposer needs a search space: "
                "hydra.sweeper.params (interval(…), choice(…)) or hydra.sweeper.space "
                "(field names)",
            )
        )
    objectives = list(settings.objectives) or _declared_objectives(base_arm.config)
    if not objectives:
        problems.append(
            Problem(
                path="metadata.success_metric",
                message="evolution optimises a metric and none is declared: set "
                "metadata.success_metric, or hydra.sweeper.objectives",
                expected="a key of run_result.json metrics, e.g. eval/exact_match",
            )
        )
    problems += _proposer_problems(settings)
    if problems:
        raise ConfigError(problems)
    check_space(base, dimensions, config_name)
    return EvolutionContext(
        config_name=config_name,
        base=base,
        dimensions=dimensions,
        objectives=objectives,
        population=settings.population,
        hypothesis=base_arm.config.metadata.hypothesis,
        base_arm=base_arm,
    )


@SWEEPER_PREFLIGHTS.register(EVOLVE_SWEEPER)
def preflight_evolution(overrides: list[str] | tuple[str, ...], config_name: str | None) -> None:
    """``evsys plan``/``validate`` and ``python -m evsys --multirun``: the evolve sweep's settings,
    search space, objectives and proposer, checked before anything is written (ConfigError)."""
    from evsys.compose.compose import compose
    from evsys.evolve.settings import read_settings
    from evsys.preflight import _with_hydra, is_sweep_override

    fixed = [line for line in overrides if not is_sweep_override(line)]
    composition = compose(fixed, config_name)
    if composition.hydra is None:
        return  # the config itself is broken: its own check reports why
    sweeper = OmegaConf.select(_with_hydra(composition), "hydra.sweeper")
    raw = OmegaConf.to_container(sweeper, resolve=True) if sweeper is not None else {}
    assert isinstance(raw, dict)
    settings = read_settings({str(k): v for k, v in raw.items()})
    prepare(settings, list(overrides), config_name)


def _declared_objectives(config: Any) -> list[Objective]:
    metadata = config.metadata
    declared = metadata.objectives or ([metadata.success_metric] if metadata.success_metric else [])
    return [Objective(metric=m.name, direction=m.direction) for m in declared]


def _proposer_problems(settings: EvolveSettings) -> list[Problem]:
    from importlib.util import find_spec

    from pydantic import ValidationError

    needed = ["sqlalchemy", *(["optuna"] if settings.proposer.kind == "optuna" else [])]
    missing = [name for name in needed if find_spec(name) is None]
    if missing:
        return [
            Problem(
                path="hydra.sweeper.proposer.kind",
                message=f"the evolve sweeper needs {', '.join(missing)}: "
                "pip install 'evsys[evolve]'",
                value=settings.proposer.kind,
            )
        ]
    path = "hydra.sweeper.proposer.params"
    params = dict(settings.proposer.params)
    try:
        if settings.proposer.kind == "optuna":
            from evsys.evolve.proposers.optuna import OptunaParams

            OptunaParams(**params)
            return []
        from evsys.evolve.proposers.llm import LLMParams
        from evsys.registry import INFERENCE_CLIENTS

        client = LLMParams(**params).client
        if client.kind not in INFERENCE_CLIENTS:
            return INFERENCE_CLIENTS.unknown(client.kind, path=f"{path}.client.kind").problems
        config_class = INFERENCE_CLIENTS.config_class(client.kind)
        if config_class is not None:
            config_class(**client.params)
    except ValidationError as exc:
        return [
            Problem(
                path=".".join([path, *map(str, e["loc"])]), message=e["msg"], value=e.get("input")
            )
            for e in exc.errors()
        ]
    return []
