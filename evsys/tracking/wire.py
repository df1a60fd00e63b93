"""The write ops both sides agree on: their names, their fields, and the envelope of a write.

A write is ``{"id": <uuid4 hex>, "op": <op>, "data": {...}, "time": <unix seconds>}``. Its id is
made by the client, so the service can apply it exactly once however often it is replayed; the
objects it names carry client-made ids too, so a write can arrive before its object's creation.
Shared by the client (which checks before mirroring) and the service (which checks on arrival).
"""

from __future__ import annotations

import os
import time
from typing import Any

API_PREFIX = "/api/dashboard/api"
MAX_WRITES_PER_BATCH = 1000

# field type names → the Python types a JSON value of that type decodes to
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "number": (int, float),
    "obj": (dict,),
    "list": (list,),
    "any": (object,),
}

# op → {field: (type, required)}
OPS: dict[str, dict[str, tuple[str, bool]]] = {
    "experiment.create": {
        "id": ("str", True),
        "name": ("str", True),
        "hypothesis": ("str", False),
        "success_metric": ("str", False),
        "direction": ("str", False),
        "tags": ("list", False),
        "project_goal_id": ("str", False),
        "parent_experiment_id": ("str", False),
        "sweep_plan": ("obj", False),
        "status": ("str", False),
    },
    "experiment.update": {
        "id": ("str", True),
        "status": ("str", False),
        "best_run_id": ("str", False),
        "best_score": ("number", False),
        "conclusion": ("str", False),
        "sweep_plan": ("obj", False),
        "tags": ("list", False),
        "hypothesis": ("str", False),
    },
    "generation.create": {
        "id": ("str", True),
        "experiment_id": ("str", True),
        "index": ("int", True),
        "parent_run_ids": ("list", False),
        "proposer": ("str", False),
        "status": ("str", False),
    },
    "generation.update": {
        "id": ("str", True),
        "status": ("str", False),
        "best_run_id": ("str", False),
        "best_score": ("number", False),
        "summary": ("obj", False),
    },
    "run.create": {
        "id": ("str", True),
        "experiment_id": ("str", True),
        "name": ("str", True),
        "status": ("str", False),
        "config": ("obj", False),
        "config_hash": ("str", False),
        "overrides": ("list", False),
        "group_id": ("str", False),
        "seed": ("int", False),
        "git": ("obj", False),
        "generation_id": ("str", False),
        "parent_run_ids": ("list", False),
        "data_lineage": ("list", False),
    },
    "run.update": {
        "id": ("str", True),
        "status": ("str", False),
        "error": ("str", False),
        "summary": ("obj", False),
        "config": ("obj", False),
        "config_hash": ("str", False),
    },
    "run.steps": {"run_id": ("str", True), "steps": ("list", True)},
    "eval_run.create": {
        "id": ("str", True),
        "run_id": ("str", True),
        "metrics": ("obj", True),
        "name": ("str", False),
        "step": ("int", False),
        "benchmark_id": ("str", False),
    },
    "predictions.add": {
        "id": ("str", True),
        "run_id": ("str", True),
        "eval_run_id": ("str", False),
        "rows": ("list", True),
    },
    "benchmark.record": {
        "id": ("str", True),
        "run_id": ("str", True),
        "benchmark_id": ("str", False),
        "benchmark_name": ("str", False),
        "metrics": ("obj", True),
    },
}
DIRECTIONS = ("maximize", "minimize")


def new_id() -> str:
    """A fresh uuid4 as 32 hex digits: the id of a write, or of an object a write creates.
    (``uuid.uuid4().hex``, at a third of its cost: it is made for every logged step.)"""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def make_write(op: str, data: dict[str, Any]) -> dict[str, Any]:
    """The envelope of one write, with a fresh id and the current time."""
    return {"id": new_id(), "op": op, "data": data, "time": time.time()}


def write_problem(write: Any) -> tuple[str, str] | None:
    """``(field, what is wrong)`` for a malformed write, ``None`` for a well-formed one.
    ``field`` is dotted from the write, e.g. ``data.steps[3].step``."""
    if not isinstance(write, dict):
        return "", "a write is a JSON object"
    for key, kind in (("id", str), ("op", str), ("data", dict), ("time", (int, float))):
        if not isinstance(write.get(key), kind) or isinstance(write.get(key), bool):
            return key, f"missing or not a {kind.__name__ if isinstance(kind, type) else 'number'}"
    if not 1 <= len(write["id"]) <= 64:
        return "id", "must be 1 to 64 characters"
    fields = OPS.get(write["op"])
    if fields is None:
        return "op", f"unknown op {write['op']!r}; known: {sorted(OPS)}"
    return data_problem(write["op"], write["data"])


def data_problem(op: str, data: dict[str, Any]) -> tuple[str, str] | None:
    """``(field, what is wrong)`` for the data of a write of ``op``, or ``None``."""
    fields = OPS[op]
    for name in data:
        if name not in fields:
            return f"data.{name}", f"not a field of {op}; fields: {sorted(fields)}"
    for name, (type_name, required) in fields.items():
        value = data.get(name)
        if value is None:
            if required:
                return f"data.{name}", f"required by {op}"
            continue
        if not _is(value, type_name):
            return f"data.{name}", f"must be {type_name}, got {type(value).__name__}"
    if data.get("direction") is not None and data["direction"] not in DIRECTIONS:
        return "data.direction", f"must be one of {list(DIRECTIONS)}"
    for name in ("metrics", "summary"):
        if name in data and op != "generation.update":
            problem = _metrics_problem(data[name], f"data.{name}")
            if problem:
                return problem
    if op == "run.steps":
        return _steps_problem(data["steps"])
    if op == "predictions.add":
        return _rows_problem(data["rows"])
    return None


def _is(value: Any, type_name: str) -> bool:
    if isinstance(value, bool):
        return type_name == "any"
    if type_name == "number" and isinstance(value, float):
        return True
    return isinstance(value, _TYPES[type_name])


def _metrics_problem(metrics: dict[str, Any], where: str) -> tuple[str, str] | None:
    for name, value in metrics.items():
        if not name:
            return where, "a metric name is empty"
        if not _is(value, "number"):
            return f"{where}.{name}", f"must be a number, got {type(value).__name__}"
    return None


def _steps_problem(steps: list[Any]) -> tuple[str, str] | None:
    for i, entry in enumerate(steps):
        where = f"data.steps[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"step", "metrics"}:
            return where, 'must be {"step": int, "metrics": {name: number}}'
        if not _is(entry["step"], "int"):
            return f"{where}.step", "must be an int"
        if not isinstance(entry["metrics"], dict):
            return f"{where}.metrics", "must be an object"
        problem = _metrics_problem(entry["metrics"], f"{where}.metrics")
        if problem:
            return problem
    return None


def _rows_problem(rows: list[Any]) -> tuple[str, str] | None:
    for i, row in enumerate(rows):
        where = f"data.rows[{i}]"
        if not isinstance(row, dict):
            return where, "must be an object"
        for key in ("prompt", "completion"):
            if not isinstance(row.get(key), str):
                return f"{where}.{key}", "required, a string"
        if row.get("score") is not None and not _is(row["score"], "number"):
            return f"{where}.score", "must be a number"
        if row.get("passed") is not None and not isinstance(row["passed"], bool):
            return f"{where}.passed", "must be true or false"
    return None
