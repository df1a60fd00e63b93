"""One rank of a data-parallel local run (see :mod:`evsys.backends.local.distributed`).

``torch.distributed.run`` starts this module once per process: the same lifecycle as the arm's
process, minus eval and the record, which the arm's process keeps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from evsys.backends.local.distributed import (
    JOB_FILE,
    RESULT_FILE,
    ROWS_FILE,
    is_main_rank,
    world_size,
)
from evsys.files import write_json_atomically


def _run_rank(job_dir: Path, run_dir: Path) -> None:
    """One rank: the same lifecycle as the arm's process, minus eval and the record."""
    from evsys.benchmarks import InLoopValidation, load_benchmarks
    from evsys.callbacks import Callbacks
    from evsys.config import ExperimentConfig
    from evsys.data.jsonl import read_jsonl_lines
    from evsys.protocols import RunContext
    from evsys.registry import BACKENDS, DATA_STORES, LOG_STORES, resolve_algorithm

    job = json.loads((job_dir / JOB_FILE).read_text())
    config = ExperimentConfig.model_validate(job["config"])
    rows = read_jsonl_lines(job_dir / ROWS_FILE)
    if os.environ.get("LOCAL_RANK") is not None and _cuda_available():
        import torch

        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # "cuda" means this rank's GPU
    main = is_main_rank()
    data_store = DATA_STORES.build(config.data_store.kind, config.data_store.params)
    # Rank 0 alone runs the callbacks; the local trainer tells the others when they stop.
    callbacks = Callbacks.build(config.callbacks) if main else Callbacks()
    log_store = (
        callbacks.watch(
            LOG_STORES.build(config.log_store.kind, config.log_store.params, run_dir=run_dir)
        )
        if main
        else _Silent()
    )
    backend = BACKENDS.build(config.backend.kind, config.backend.params)
    algorithm = resolve_algorithm(config.algorithm.kind, config.backend.kind)(
        **config.algorithm.params
    )
    handles = backend.prepare(model=config.model, run_dir=run_dir)
    # Rank 0 alone validates (and logs): the other ranks need no benchmark.
    benchmarks = load_benchmarks(config, data_store) if main else []
    validation = InLoopValidation(benchmarks, config.eval)
    ctx = RunContext(
        run_id=job["run_id"],
        run_dir=run_dir,
        config=config,
        data_store=data_store,
        log_store=log_store,
        backend=backend,
        handles=handles,
        train_rows=rows,
        validation=validation,
        callbacks=callbacks,
    )
    try:
        callbacks.train_begin()
        result = algorithm.train(ctx)
        callbacks.train_end()
    finally:
        backend.teardown(handles)
        log_store.close()
    if main:
        result.metrics |= validation.latest() | {"train/world_size": float(world_size())}
        result.extras |= callbacks.record()
        write_json_atomically(job_dir / RESULT_FILE, dataclasses.asdict(result))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class _Silent:
    """The log store of every rank but 0: the run's curves are rank 0's."""

    def log_scalar(self, name: str, value: float, step: int) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_hyperparams(self, params: dict[str, Any]) -> None: ...

    def log_artifact(self, name: str, path: str) -> None: ...

    def close(self) -> None: ...


if __name__ == "__main__":
    _run_rank(Path(sys.argv[1]), Path(sys.argv[2]))
