"""Early stopping: end training when a validation metric stops improving.

In-loop validation (a ``val`` benchmark of ``metadata.benchmark`` with ``run_every``) logs
``val/<benchmark>/<metric>``; this callback watches one of them::

    callbacks:
      - kind: early_stopping
        params: {metric: val/tool_selection/exact_match, patience: 3, min_delta: 0.01}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from evsys.callbacks import Stop
from evsys.config import Strict
from evsys.registry import register_callback


@register_callback("early_stopping")
class EarlyStopping:
    """Stops training after ``patience`` validations in a row without an improvement."""

    watches_val_metrics = ("metric",)  # validation refuses a metric no `val` benchmark logs

    class Config(Strict):
        metric: str = Field(
            description="The validation metric watched: val/<benchmark>/<metric>, as logged by "
            "a `val` benchmark of metadata.benchmark."
        )
        patience: int = Field(
            3, ge=1, description="Validations in a row without an improvement that stop the run."
        )
        min_delta: float = Field(
            0.0, ge=0, description="The least change over the best value that counts as one."
        )
        direction: Literal["max", "min"] = Field("max", description="Whether higher is better.")

        @field_validator("metric")
        @classmethod
        def _a_validation_metric(cls, metric: str) -> str:
            if not metric.startswith("val/"):
                raise ValueError(
                    f"'{metric}' is not a validation metric: early stopping watches "
                    "val/<benchmark>/<metric> (a `val` benchmark of metadata.benchmark)"
                )
            return metric

    def __init__(self, **params: object):
        self.cfg = self.Config(**params)
        self.best: float | None = None
        self.stale = 0  # validations since the last improvement

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> Stop | None:
        value = metrics.get(self.cfg.metric)
        if value is None:
            return None  # another benchmark was due at this step
        sign = 1 if self.cfg.direction == "max" else -1
        if self.best is None or sign * (value - self.best) > self.cfg.min_delta:
            self.best, self.stale = value, 0
            return None
        self.stale += 1
        if self.stale < self.cfg.patience:
            return None
        return Stop(
            f"{self.cfg.metric} has not improved on {self.best:g} by more than "
            f"{self.cfg.min_delta:g} in {self.stale} validations (step {step})"
        )
