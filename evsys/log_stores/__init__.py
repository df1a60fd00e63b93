"""Built-in log stores; importing this package registers them (``LOG_STORES`` does so lazily).

The runner builds a store as ``cls(**params, run_dir=run_dir)``: ``run_dir`` is the run's output
directory, where a store without ``log_dir`` writes (``None``: ``log_dir`` is required).
"""

from evsys.log_stores import dashboard, jsonl, multiplex, tensorboard

__all__ = ["dashboard", "jsonl", "multiplex", "tensorboard"]
