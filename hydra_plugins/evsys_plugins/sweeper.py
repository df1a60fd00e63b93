"""The evsys sweeper: Hydra's sweep grammar, with every arm validated before any starts.

Selected by evsys's config (``hydra/sweeper: evsys``). Its settings live under
``hydra.sweeper`` and are usually set by an experiment file::

    hydra:
      sweeper:
        params: {algorithm.params.lora_rank: "8,32"}          # crossed, as with Hydra's basic sweeper
        paired: [{algorithm.params.learning_rate: "1e-4,3e-4",  # varied together, not crossed
                  algorithm.params.warmup_ratio: "0,0.1"}]
        n_repeats: 3                                           # each arm over seeds base_seed…
        name_template: "{base}__r{algorithm.params.lora_rank}"
        arms: [[algorithm=sft], [algorithm=rl, data=arithmetic]]  # explicit arms, as listed
"""

# No `from __future__ import annotations` here: OmegaConf reads the dataclass's annotations as
# real types (and Optional[...], not `X | None`, which OmegaConf 2.3 does not understand).
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class EvsysSweeperConf:
    _target_: str = "hydra_plugins.evsys_plugins.sweeper.EvsysSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045
    # A dict, not None: `hydra.sweeper.params.seed='1,2'` on the command line needs a node to set.
    params: Dict[str, str] = field(default_factory=dict)  # noqa: UP006
    paired: List[Dict[str, str]] = field(default_factory=list)  # noqa: UP006
    arms: List[List[str]] = field(default_factory=list)  # noqa: UP006
    n_repeats: int = 1
    base_seed: Optional[int] = None  # noqa: UP045
    name_template: Optional[str] = None  # noqa: UP045


ConfigStore.instance().store(
    group="hydra/sweeper", name="evsys", node=EvsysSweeperConf, provider="evsys"
)


class LaunchingSweeper(Sweeper):
    """What evsys's sweepers share: Hydra's configured launcher for their arms, and how a sweep
    ends. Abstract (no ``sweep``), so Hydra's plugin scan does not offer it as a sweeper."""

    config: Optional[DictConfig] = None  # noqa: UP045
    launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    @staticmethod
    def ended(code: int) -> None:
        """The sweep's exit code, for evsys's main; bad input exits at once, before any arm
        directory exists: Hydra has nothing left to do."""
        from evsys.app import EXIT_BAD_INPUT, note_sweep_exit_code

        if code == EXIT_BAD_INPUT:
            sys.exit(code)
        note_sweep_exit_code(code)


class EvsysSweeper(LaunchingSweeper):
    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        paired: list[dict[str, str]] | None = None,
        arms: list[list[str]] | None = None,
        n_repeats: int = 1,
        base_seed: int | None = None,
        name_template: str | None = None,
    ) -> None:
        # Imported here: Hydra imports every plugin module at start-up, for any app.
        from evsys.sweep.plan import SweepAxes

        self.axes = SweepAxes(
            params={str(k): str(v) for k, v in (params or {}).items()},
            paired=[{str(k): str(v) for k, v in axis.items()} for axis in paired or []],
            arms=[[str(line) for line in arm] for arm in arms or []],
            n_repeats=n_repeats,
            base_seed=base_seed,
        )
        self.max_batch_size = max_batch_size
        self.name_template = name_template

    def sweep(self, arguments: list[str]) -> Any:
        from evsys.sweep.sweeper import run_sweep

        assert self.config is not None
        code = run_sweep(
            config=self.config,
            launcher=self.launcher,
            arguments=list(arguments),
            axes=self.axes,
            name_template=self.name_template,
            max_batch_size=self.max_batch_size,
        )
        return self.ended(code)
