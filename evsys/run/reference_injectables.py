"""The reference's injectable signatures for :class:`evsys.Experiment`, adapted to evsys's own.

evsys calls, once per arm (see :mod:`evsys.run.dependencies`):

- ``train_fn(config, run_dir) -> RunResult``
- ``inference_factory(config, checkpoint) -> InferenceClient``

The reference's ``Experiment`` takes instead:

- ``train_fn(cfg) -> list[RunResult]``: told apart by arity (one positional parameter). It is
  called with the arm's config; the result whose ``run_id`` is the arm's name stands for the arm
  (a single result, or a list of one, stands whatever its id).
- ``inference_factory(result, run_config) -> InferenceClient``: the same arity as evsys's, so told
  apart by its first parameter, annotated ``RunResult`` or named ``result`` / ``run_result``, or
  its second, annotated ``RunConfig`` or named ``run_config`` / ``run_cfg``. It is called with a
  ``RunResult`` naming the checkpoint to score (``artifacts["final_checkpoint"]``; none for the
  starting model, scored when ``eval.baseline`` is on) and the arm's config.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evsys.protocols import InferenceClient, RunResult

_RESULT_NAMES = frozenset({"result", "run_result"})
_RUN_CONFIG_NAMES = frozenset({"run_config", "run_cfg"})


def adapt_train_fn(train_fn: Callable[..., Any] | None) -> Callable[..., RunResult] | None:
    """evsys's ``(config, run_dir) -> RunResult`` for either signature."""
    if train_fn is None or len(_positional(train_fn)) != 1:
        return train_fn

    def train(config: Any, run_dir: Path) -> RunResult:
        return _arm_result(train_fn(config), str(getattr(config, "name", "")))

    train.__wrapped__ = train_fn  # type: ignore[attr-defined]
    return train


def adapt_inference_factory(
    factory: Callable[..., Any] | None,
) -> Callable[..., InferenceClient] | None:
    """evsys's ``(config, checkpoint) -> InferenceClient`` for either signature."""
    if factory is None or not is_reference_factory(factory):
        return factory

    def inference_client(config: Any, checkpoint: str | None) -> InferenceClient:
        artifacts = {"final_checkpoint": str(checkpoint)} if checkpoint is not None else {}
        result = RunResult(
            run_id=str(getattr(config, "name", "")), status="completed", artifacts=artifacts
        )
        return factory(result, config)

    inference_client.__wrapped__ = factory  # type: ignore[attr-defined]
    return inference_client


def is_reference_factory(factory: Callable[..., Any]) -> bool:
    """Whether ``factory`` takes ``(RunResult, RunConfig)`` (see the module's docstring)."""
    params = _positional(factory)
    if len(params) != 2:
        return False
    first, second = params
    return (
        _annotated(first, "RunResult")
        or _annotated(second, "RunConfig")
        or first.name in _RESULT_NAMES
        or second.name in _RUN_CONFIG_NAMES
    )


def _positional(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """The parameters a positional call fills (those without a default); none when unknown."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [
        p
        for p in signature.parameters.values()
        if p.kind in kinds and p.default is inspect.Parameter.empty
    ]


def _annotated(param: inspect.Parameter, class_name: str) -> bool:
    annotation = param.annotation
    if isinstance(annotation, str):  # `from __future__ import annotations`
        return annotation.rsplit(".", 1)[-1] == class_name
    return getattr(annotation, "__name__", None) == class_name


def _arm_result(results: Any, arm_name: str) -> RunResult:
    if isinstance(results, RunResult):
        return results
    results = list(results or [])
    if len(results) == 1:
        return results[0]
    for result in results:
        if getattr(result, "run_id", None) == arm_name:
            return result
    error = f"train_fn returned {len(results)} results, none with run_id {arm_name!r}"
    return RunResult(run_id=arm_name, status="failed", error=error)
