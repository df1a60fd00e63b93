"""``tensorboard`` log store: real TensorBoard event files, written without torch or TensorFlow.

Scalars are legacy ``simple_value`` summaries (float32, as TensorBoard stores every scalar), so
``tensorboard --logdir`` and ``EventAccumulator.Scalars(tag)`` read them directly. Hyperparameters
and artifacts are text summaries (JSON of the params under tag ``hparams``; the path under
``artifacts/<name>``): readable in the Text tab and by ``EventAccumulator.Tensors(tag)``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from evsys.config import Strict
from evsys.errors import MissingDependencyError
from evsys.log_stores._common import as_float, json_default, resolve_log_dir
from evsys.registry import register_log_store


@register_log_store("tensorboard")
class TensorBoardLogStore:
    """Writes scalars, hyperparameters and artifact paths to a TensorBoard event file."""

    class Config(Strict):
        log_dir: str | None = Field(
            None,
            description="Directory for the event files. None: <run directory>/tensorboard.",
        )
        flush_secs: float = Field(
            5.0, gt=0, description="How often, in seconds, queued events are flushed to disk."
        )

    def __init__(self, *, run_dir: Path | None = None, **params: Any):
        self.cfg = self.Config(**params)
        self.log_dir = resolve_log_dir(
            self.cfg.log_dir, run_dir, kind="tensorboard", default_subdir="tensorboard"
        )
        try:  # lazy: `import evsys` must not pay for (or require) tensorboard
            from tensorboard.compat.proto import event_pb2, summary_pb2
            from tensorboard.plugins.text.summary_v2 import text_pb
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError:
            raise MissingDependencyError(
                "tensorboard", "tensorboard", "The tensorboard log store"
            ) from None
        self._event_pb2, self._summary_pb2, self._text_pb = event_pb2, summary_pb2, text_pb
        self._writer = EventFileWriter(str(self.log_dir), flush_secs=self.cfg.flush_secs)
        # Text goes at the latest step seen, never back at 0: TensorBoard's reader treats a step
        # that goes backwards as a restarted run and drops every later point of the run.
        self._last_step = 0

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.log_metrics({name: value}, step)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        summary = self._summary_pb2.Summary()
        for name, value in metrics.items():
            summary.value.add(tag=name, simple_value=as_float(name, value))
        self._write(summary, step)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        text = json.dumps(params, indent=2, sort_keys=True, default=json_default)
        self._write(self._text_pb("hparams", text), self._last_step)

    def log_artifact(self, name: str, path: str) -> None:
        self._write(self._text_pb(f"artifacts/{name}", str(path)), self._last_step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()

    def _write(self, summary: Any, step: int) -> None:
        self._last_step = max(self._last_step, step)
        event = self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
        self._writer.add_event(event)
