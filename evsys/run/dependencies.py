"""What an arm's lifecycle may be given in place of the real thing.

The runner trains with the backend and the algorithm the config names, scores with the backend's
inference client and reads ``metadata.benchmark`` from disk. An :class:`evsys.Experiment` (and a
test) may put its own in their place, as the reference's ``experiment`` module allows: a train
function, an inference factory, benchmarks already loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evsys.config import ExperimentConfig
from evsys.protocols import InferenceClient, RunResult

if TYPE_CHECKING:
    from evsys.benchmarks import Benchmark

TrainFn = Callable[[ExperimentConfig, Path], RunResult]
"""``(config, run_dir) -> RunResult``: train the arm (or one continual stage) in ``run_dir``; a
completed result names its ``artifacts["final_checkpoint"]``, which scoring loads."""

InferenceFactory = Callable[[ExperimentConfig, str | None], InferenceClient]
"""``(config, checkpoint) -> InferenceClient``: the client that scores ``checkpoint`` (None: the
starting model). Called once per scoring: baseline, after training, after each continual stage."""


@dataclass(frozen=True)
class ArmDependencies:
    train: TrainFn | None = None
    """None: the backend and algorithm of the config."""
    inference_factory: InferenceFactory | None = None
    """None: ``eval.inference``, else the backend's own client."""
    benchmarks: list[Benchmark] | None = None
    """None: ``metadata.benchmark``, read before training."""
    dashboard: Any = None
    """A DashboardClient, or the settings of one (``evsys.Experiment(store=...)``): the arm is
    also a run on that dashboard. None: only what the config's log store names."""

    def inference_client(self, config: ExperimentConfig, checkpoint: str | None) -> InferenceClient:
        if self.inference_factory is not None:
            return self.inference_factory(config, checkpoint)
        from evsys.run.evaluation import build_inference_client

        return build_inference_client(config, checkpoint)


DEFAULT = ArmDependencies()
