"""The evolve sweeper: arms proposed generation by generation by Optuna or an LLM.

Selected with ``hydra/sweeper=evolve``; its settings live under ``hydra.sweeper``::

    hydra:
      sweeper:
        proposer: {kind: optuna, params: {sampler: tpe}}       # or {kind: llm, params: {client: …}}
        params: {algorithm.params.learning_rate: "tag(log, interval(1e-5, 1e-2))"}
        space: [algorithm.params.lora_rank]                    # ranges from the registry schemas
        generations: 3
        population: 4

See :mod:`evsys.evolve` for the loop; every setting is checked in pre-flight.
"""

# No `from __future__ import annotations` here: OmegaConf reads the dataclass's annotations as
# real types (and Optional[...], not `X | None`, which OmegaConf 2.3 does not understand).
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from hydra_plugins.evsys_plugins.sweeper import LaunchingSweeper

# Every proposer setting, unset (null: the proposer's default), so that each can be set on the
# command line without `+` (hydra.sweeper.proposer.params.sampler=cmaes): Hydra's config is
# struct. optuna: sampler, n_startup_trials, startup, cmaes_start; llm: client, max_tokens,
# temperature, show_arms, rounds, include_schema.
_PROPOSER_PARAMS = (
    "sampler", "n_startup_trials", "startup", "cmaes_start",
    "client", "max_tokens", "temperature", "show_arms", "rounds", "include_schema",
)  # fmt: skip


@dataclass
class EvolveSweeperConf:
    _target_: str = "hydra_plugins.evsys_plugins.evolve_sweeper.EvolveSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045
    proposer: Any = field(
        default_factory=lambda: {"kind": "optuna", "params": dict.fromkeys(_PROPOSER_PARAMS)}
    )
    params: Dict[str, str] = field(default_factory=dict)  # noqa: UP006
    space: List[str] = field(default_factory=list)  # noqa: UP006
    objectives: List[Any] = field(default_factory=list)  # noqa: UP006
    generations: int = 3
    population: int = 4
    max_arms: Optional[int] = None  # noqa: UP045
    max_wall_s: Optional[float] = None  # noqa: UP045
    storage: Optional[str] = None  # noqa: UP045
    seed: Optional[int] = None  # noqa: UP045
    tracker: Optional[str] = None  # noqa: UP045


ConfigStore.instance().store(
    group="hydra/sweeper", name="evolve", node=EvolveSweeperConf, provider="evsys"
)


class EvolveSweeper(LaunchingSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, **settings: Any) -> None:  # noqa: UP045
        self.max_batch_size = max_batch_size
        self.raw = {
            key: OmegaConf.to_container(value, resolve=True)
            if OmegaConf.is_config(value)
            else value
            for key, value in settings.items()
        }

    def sweep(self, arguments: List[str]) -> Any:  # noqa: UP006
        # Imported here: Hydra imports every plugin module at start-up, for any app.
        from evsys.errors import ConfigError
        from evsys.evolve.loop import EXIT_BAD_INPUT, run_evolution
        from evsys.evolve.settings import read_settings
        from evsys.report import format_problems

        assert self.config is not None
        try:
            settings = read_settings(self.raw)
        except ConfigError as exc:
            print(format_problems(exc.problems, header=exc.header), file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        code = run_evolution(
            config=self.config,
            launcher=self.launcher,
            arguments=list(arguments),
            settings=settings,
            max_batch_size=self.max_batch_size,
        )
        return self.ended(code)
