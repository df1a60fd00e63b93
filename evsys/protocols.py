"""The contracts extensions satisfy (PEP 544), and the records a run passes around.

No base class to inherit: any class with the right methods (and, for configurable extensions, a
nested Pydantic ``Config``) is an extension. Register it with the matching ``register_*``
decorator from :mod:`evsys.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from evsys.config import ExperimentConfig

RunStatus = Literal["completed", "failed", "cancelled", "timeout"]
"""``cancelled``: stopped by a signal or Ctrl-C; ``timeout``: by its time limit (Slurm, submitit)."""
Row = dict[str, Any]


@dataclass
class VerificationResult:
    """A verifier's verdict on one completion: ``reward`` in [0, 1] by convention."""

    reward: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """What ``Algorithm.train`` returns, and what ``run_result.json`` records."""

    run_id: str
    status: RunStatus
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    """Named outputs, e.g. ``{"final_checkpoint": "<run_dir>/checkpoints/final"}``."""
    error: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class InLoopValidator(Protocol):
    """What a run context asks of its in-loop validation (``evsys.benchmarks.InLoopValidation``):
    stated here, so that these contracts sit below the benchmarks that fulfil them."""

    def due(self, step: int) -> Sequence[Any]: ...

    def run(
        self, step: int, make_client: Callable[[], InferenceClient], log_store: LogStore
    ) -> dict[str, float]: ...


class RunCallbacks(Protocol):
    """What a run context and its phases ask of the run's callbacks (``evsys.callbacks.Callbacks``)."""

    @property
    def should_stop(self) -> bool: ...

    def evaluate(self, step: int, scores: dict[str, float]) -> None: ...

    def step_end(self, step: int) -> None: ...

    def steps_after(self, offset: int) -> AbstractContextManager[None]: ...


@dataclass
class RunContext:
    """Everything an algorithm needs to train one arm."""

    run_id: str
    run_dir: Path
    config: ExperimentConfig
    data_store: DataStore
    log_store: LogStore
    backend: Backend
    handles: dict[str, Any]
    """What ``backend.prepare`` returned: model, tokenizer, clients, …"""
    train_rows: list[Row]
    extras: dict[str, Any] = field(default_factory=dict)
    """Free-form; always holds ``train_rows``, ``n_train_rows``, ``backend_handles`` (the
    handles), ``model_name`` and ``tags`` (the run's), as the reference's runner fills them."""
    validation: InLoopValidator | None = None
    """The ``val`` benchmarks of ``metadata.benchmark`` (the runner always sets it; it may hold
    none). None: a context built outside a run."""

    callbacks: RunCallbacks | None = None
    """The run's ``callbacks`` (the runner sets them). None: a context built outside a run."""

    def __post_init__(self) -> None:
        # The reference's algorithms read the run's facts from ``extras``: filled from the fields
        # on every construction (a phase's ``dataclasses.replace`` gets its own rows), into a
        # new dict so a phase never rewrites its parent's.
        model = getattr(self.config, "model", None)
        self.extras = {
            **self.extras,
            "train_rows": self.train_rows,
            "n_train_rows": len(self.train_rows),
            "backend_handles": self.handles,
            "model_name": getattr(model, "name", None),
            "tags": list(getattr(self.config, "tags", None) or []),
        }

    @property
    def output_dir(self) -> Path:
        """The run's directory (the reference's name for :attr:`run_dir`)."""
        return self.run_dir

    def validate(
        self, step: int, make_client: Callable[[], InferenceClient], *, end_step: bool = True
    ) -> dict[str, float]:
        """The end of optimizer step ``step``; training loops call it after every one, once
        they logged the step's metrics, then honour :attr:`should_stop`.

        Scores the ``val`` benchmarks due at ``step`` on the live model, logs them as
        ``val/<name>/<metric>`` (``make_client()``, called only when one is due, wraps the live
        weights) and calls the callbacks' ``on_evaluate``, then their ``on_step_end`` unless
        ``end_step`` is false (a loop that logs the step later calls :meth:`end_step` itself)."""
        scores = {}
        if self.validation is not None:
            scores = self.validation.run(step, make_client, self.log_store)
        if self.callbacks is not None:
            self.callbacks.evaluate(step, scores)
            if end_step:
                self.callbacks.step_end(step)
        return scores

    def end_step(self, step: int) -> None:
        """Call the callbacks' ``on_step_end`` (see :meth:`validate`)."""
        if self.callbacks is not None:
            self.callbacks.step_end(step)

    @property
    def should_stop(self) -> bool:
        """Whether a callback asked training to stop: loops end after the current step."""
        return self.callbacks is not None and self.callbacks.should_stop

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def seed(self) -> int:
        return self.config.seed


@runtime_checkable
class Algorithm(Protocol):
    """Trains one arm.

    Implementors provide ``train``; a nested ``Config`` validates ``algorithm.params``::

        @register_algorithm("cosine_toy")
        class CosineToy:
            class Config(BaseModel):
                model_config = ConfigDict(extra="forbid")
                steps: int = Field(100, gt=0, description="Optimizer steps.")

            def __init__(self, **params):
                self.cfg = self.Config(**params)

            def train(self, ctx: RunContext) -> RunResult:
                for step in range(self.cfg.steps):
                    ctx.log_store.log_metrics({"loss": 1 / (step + 1)}, step=step)
                return RunResult(run_id=ctx.run_id, status="completed")
    """

    name: ClassVar[str]

    def train(self, ctx: RunContext) -> RunResult: ...


@runtime_checkable
class Backend(Protocol):
    """Owns the engine: loads the model before training, releases it after."""

    name: ClassVar[str]

    def prepare(self, *, model: Any, run_dir: Path) -> dict[str, Any]: ...

    def teardown(self, handles: dict[str, Any]) -> None: ...


@runtime_checkable
class Verifier(Protocol):
    """Scores one completion (RL reward, eval correctness)."""

    def verify(self, *, prompt: str, completion: str, target: Any) -> VerificationResult: ...


@runtime_checkable
class Metric(Protocol):
    """Aggregates predictions against targets into one number."""

    def compute(self, *, predictions: Sequence[Any], targets: Sequence[Any]) -> float: ...


@runtime_checkable
class InferenceClient(Protocol):
    """Generates text from a model (the trained one, a base model, or an API model)."""

    def generate(
        self,
        *,
        prompt: str | list[dict[str, Any]],
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None = None,
    ) -> str: ...


@runtime_checkable
class Transform(Protocol):
    """Rewrites rows: ``transform(rows) -> rows``."""

    def __call__(self, rows: list[Row]) -> list[Row]: ...


@runtime_checkable
class DataStore(Protocol):
    """Where data is read from and written to."""

    def read_jsonl(self, path: str) -> list[Row]: ...

    def write_jsonl(self, path: str, rows: Sequence[Row]) -> None: ...

    def read_json(self, path: str) -> Any: ...

    def write_json(self, path: str, obj: Any) -> None: ...

    def exists(self, path: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]: ...


@runtime_checkable
class LogStore(Protocol):
    """Where metrics, hyperparameters and artifacts of a run are recorded."""

    def log_scalar(self, name: str, value: float, step: int) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_hyperparams(self, params: dict[str, Any]) -> None: ...

    def log_artifact(self, name: str, path: str) -> None: ...

    def close(self) -> None: ...
