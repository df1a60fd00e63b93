"""Helpers the file-writing log stores share: where to write, and how to make values JSON-safe."""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

from evsys.errors import ConfigError, Problem


def resolve_log_dir(
    log_dir: str | None, run_dir: Path | None, *, kind: str, default_subdir: str | None = None
) -> Path:
    """``log_dir`` when set, else ``run_dir`` (or ``run_dir/default_subdir``); created if missing."""
    if log_dir is not None:
        path = Path(log_dir)
    elif run_dir is not None:
        path = Path(run_dir) / default_subdir if default_subdir else Path(run_dir)
    else:
        raise ConfigError(
            Problem(
                path="params.log_dir",
                message=f"log store '{kind}' has no log_dir and was built without a run directory",
                expected="a directory path",
            ),
            header=f"Set params.log_dir for the '{kind}' log store, or build it with run_dir=...",
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook: numpy/torch-like scalars become numbers, the rest text.

    Integral scalars (numpy ints) stay ints; anything with ``__float__`` becomes a float; other
    objects (paths, enums, …) are written as ``str(obj)`` so a hyperparameter never breaks logging.
    """
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if hasattr(obj, "__float__"):
        try:
            return float(obj)
        except (TypeError, ValueError):  # e.g. a multi-element tensor: fall back to its text
            pass
    return str(obj)


def as_float(name: str, value: Any) -> float:
    """``value`` as a float, or a clear error naming the metric."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"metric '{name}' must be a number (or have __float__), got {type(value).__name__}: "
            f"{value!r}"
        ) from None
