"""``jsonl`` log store: plain files a person, ``jq`` or pandas can read without evsys.

``<log_dir>/metrics.jsonl``   one line per ``log_metrics``/``log_scalar`` call:
                              ``{"step": 3, "time": 1718000000.0, "loss": 0.25}``
``<log_dir>/hparams.json``    the hyperparameters (every ``log_hyperparams`` call merged in)
``<log_dir>/artifacts.json``  artifact name → path

NaN and infinity are kept as floats and written as the ``NaN``/``Infinity`` tokens Python's
``json`` module reads back (``allow_nan=True``); strict JSON parsers reject them, but replacing a
diverged loss with ``null`` would hide the divergence.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from evsys.config import Strict
from evsys.files import write_text_atomically
from evsys.log_stores._common import json_default, resolve_log_dir
from evsys.registry import register_log_store

_RESERVED = ("step", "time")


@register_log_store("jsonl")
class JsonlLogStore:
    """Appends metrics to a JSONL file; keeps hyperparameters and artifacts in JSON files."""

    class Config(Strict):
        log_dir: str | None = Field(
            None,
            description="Directory for metrics.jsonl, hparams.json and artifacts.json. "
            "None: the run directory itself.",
        )

    def __init__(self, *, run_dir: Path | None = None, **params: Any):
        self.cfg = self.Config(**params)
        self.log_dir = resolve_log_dir(self.cfg.log_dir, run_dir, kind="jsonl")
        self._metrics_file = (self.log_dir / "metrics.jsonl").open("a", encoding="utf-8")
        # Start from what is on disk, so a resumed run adds to its files instead of replacing them.
        self._hparams: dict[str, Any] = _read_json(self.log_dir / "hparams.json")
        self._artifacts: dict[str, str] = _read_json(self.log_dir / "artifacts.json")

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.log_metrics({name: value}, step)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        clashes = [key for key in _RESERVED if key in metrics]
        if clashes:
            raise ValueError(
                f"metric names {clashes} are reserved by the jsonl log store (each line already "
                "has 'step' and 'time'); rename the metric, e.g. 'train/step'"
            )
        record = {"step": step, "time": time.time(), **metrics}
        self._metrics_file.write(json.dumps(record, default=json_default, allow_nan=True) + "\n")
        self._metrics_file.flush()  # a crashed run keeps every line it logged

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self._hparams.update(params)
        _write_json_atomic(self.log_dir / "hparams.json", self._hparams)

    def log_artifact(self, name: str, path: str) -> None:
        self._artifacts[name] = str(path)
        _write_json_atomic(self.log_dir / "artifacts.json", self._artifacts)

    def close(self) -> None:
        self._metrics_file.close()


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomically(path, json.dumps(obj, indent=2, default=json_default, allow_nan=True))
