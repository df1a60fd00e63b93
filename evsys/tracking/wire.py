"""The dashboard's write protocol, shared by the client (``evsys.tracking``) and the service
(``evsys.dashboard``): the op names, the fields each op's ``data`` takes, and one checker.

Standard library only: this module runs in every arm. A write is
``{"id": <uuid4 hex>, "op": <op>, "data": {...}, "time": <unix seconds>}``; ``POST
/sdk/writes`` takes ``{"writes": [write, ...]}``, at most :data:`MAX_WRITES` of them.

``time`` is the client's clock when the write was made: of two values of one step metric the
service keeps the one written later, whichever arrives last. An update of an object the service
does not hold is refused (404) unless the write says ``"create_queued": true`` (its client
made the create, which may not have reached the service yet).

JSON has no NaN nor infinity: a number that is NaN, +Inf or -Inf travels (and is stored and
read back) as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (:data:`NONFINITE`).
A best score is the one exception: it must be finite (a NaN is never the best of anything).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

API_PREFIX = "/api/dashboard/api"
MAX_WRITES = 1000  # writes in one POST /sdk/writes
MAX_ID_LENGTH = 128  # client-made ids (uuid4 hex is 32)
MAX_SHORT_LENGTH = 256  # statuses, hashes and references to other objects
MAX_NAME_LENGTH = 256  # metric names
MAX_INT = 2**63 - 1  # steps, seeds and indexes are stored as 64-bit integers

# Field types: "id" (a non-empty string of at most MAX_ID_LENGTH), "short" (a string of at
# most MAX_SHORT_LENGTH: statuses and references, which the service indexes), "str", "int",
# "number" (int or float, NaN and infinities by name), "score" (a finite number), "bool", "obj" (a JSON object), "any" (any JSON), "list[str]", "list[obj]",
# "metrics" ({name: number}), "steps" ([{"step": int, "metrics": metrics}]), "rows"
# (predictions: [{"prompt": str, "completion": str, "expected"?, "passed"?, "score"?, "meta"?}]),
# "direction" ("maximize" | "minimize").
OPS: dict[str, dict[str, dict[str, str]]] = {
    "experiment.create": {
        "required": {"id": "id", "name": "str"},
        "optional": {
            "hypothesis": "str",
            "success_metric": "str",
            "direction": "direction",
            "tags": "list[str]",
            "project_goal_id": "short",
            "parent_experiment_id": "short",
            "sweep_plan": "obj",
            "status": "short",
        },
    },
    "experiment.update": {
        "required": {"id": "id"},
        "optional": {
            "status": "short",
            "best_run_id": "short",
            "best_score": "score",
            "conclusion": "str",
            "sweep_plan": "obj",
            "tags": "list[str]",
            "hypothesis": "str",
        },
    },
    "generation.create": {
        "required": {"id": "id", "experiment_id": "id", "index": "int"},
        "optional": {"parent_run_ids": "list[str]", "proposer": "short", "status": "short"},
    },
    "generation.update": {
        "required": {"id": "id"},
        "optional": {
            "status": "short",
            "best_run_id": "short",
            "best_score": "score",
            "summary": "obj",
        },
    },
    "run.create": {
        "required": {"id": "id", "experiment_id": "id", "name": "str"},
        "optional": {
            "status": "short",
            "config": "obj",
            "config_hash": "short",
            "overrides": "list[str]",
            "group_id": "short",
            "seed": "int",
            "git": "obj",
            "generation_id": "short",
            "parent_run_ids": "list[str]",
            "data_lineage": "list[obj]",
        },
    },
    "run.update": {
        "required": {"id": "id"},
        "optional": {
            "status": "short",
            "error": "str",
            "summary": "metrics",
            "config": "obj",
            "config_hash": "short",
        },
    },
    "run.steps": {"required": {"run_id": "id", "steps": "steps"}, "optional": {}},
    "eval_run.create": {
        "required": {"id": "id", "run_id": "id", "metrics": "metrics"},
        "optional": {"name": "str", "step": "int", "benchmark_id": "short"},
    },
    "predictions.add": {
        "required": {"id": "id", "run_id": "id", "rows": "rows"},
        "optional": {"eval_run_id": "short"},
    },
    "benchmark.record": {
        "required": {"id": "id", "run_id": "id", "metrics": "metrics"},
        "optional": {"benchmark_id": "short", "benchmark_name": "str"},
    },
}

UPDATES = ("experiment.update", "generation.update", "run.update")
ENVELOPE = ("id", "op", "data", "time", "create_queued")
NONFINITE = ("NaN", "Infinity", "-Infinity")  # how JSON here spells float("nan"), ±inf

_ROW_FIELDS = {"prompt": "str", "completion": "str"}
_ROW_OPTIONAL = {"expected": "any", "passed": "bool", "score": "number", "meta": "obj"}


def check_write(write: Any) -> str | None:
    """The first problem of one write, as ``"<field>: <what is wrong>"``; ``None`` when valid.

    Unknown fields of ``data`` are refused, so a misspelt field never vanishes silently.
    Numbers may be NaN or infinite (a diverged loss is a fact worth recording), as the strings
    of :data:`NONFINITE` (or the bare tokens Python's json writes, in mirrors of older clients).
    """
    if not isinstance(write, dict):
        return "write: must be an object with id, op, data and time"
    unknown = sorted(set(write) - set(ENVELOPE))
    if unknown:
        return f"{unknown[0]}: unknown field of a write (fields: {', '.join(ENVELOPE)})"
    if "create_queued" in write and not isinstance(write["create_queued"], bool):
        return "create_queued: must be true or false"
    problem = _check("id", write.get("id"), "id")
    if problem:
        return problem
    op = write.get("op")
    if op not in OPS:
        return f"op: unknown op {op!r}; choose from {', '.join(OPS)}"
    if "time" in write and _check("time", write["time"], "number"):
        return "time: must be a number (unix seconds)"
    data = write.get("data")
    if not isinstance(data, dict):
        return "data: must be an object"
    return check_data(op, data)


def check_data(op: str, data: dict[str, Any]) -> str | None:
    """The first problem of ``data`` for ``op`` (see :func:`check_write`)."""
    spec = OPS[op]
    for name in spec["required"]:
        if name not in data:
            return f"data.{name}: required by {op}"
    allowed = {**spec["required"], **spec["optional"]}
    for name, value in data.items():
        if name not in allowed:
            return f"data.{name}: not a field of {op} (fields: {', '.join(allowed)})"
        if value is None and name in spec["optional"]:
            continue  # null clears an optional field
        problem = _check(f"data.{name}", value, allowed[name])
        if problem:
            return problem
    return None


def _is_number(value: Any) -> bool:
    if value.__class__ is str:
        return value in NONFINITE
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return False
        return True
    return isinstance(value, float)


def _check(where: str, value: Any, kind: str) -> str | None:
    if kind == "id":
        if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
            return f"{where}: must be a non-empty string of at most {MAX_ID_LENGTH} characters"
        if not value.isprintable():
            return f"{where}: must contain printable characters only"
    elif kind == "str":
        if not isinstance(value, str):
            return f"{where}: must be a string"
    elif kind == "short":
        if not isinstance(value, str) or len(value) > MAX_SHORT_LENGTH:
            return f"{where}: must be a string of at most {MAX_SHORT_LENGTH} characters"
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_INT:
            return f"{where}: must be an integer (64-bit)"
    elif kind == "number":
        if not _is_number(value):
            return f"{where}: must be a number"
    elif kind == "score":
        if not _is_number(value) or value.__class__ is str or not math.isfinite(value):
            return (
                f"{where}: must be a finite number, not {value!r}: a NaN or infinite score is "
                "never a best (a run's summary keeps it as it is)"
            )
    elif kind == "bool":
        if not isinstance(value, bool):
            return f"{where}: must be true or false"
    elif kind == "obj":
        if not isinstance(value, dict):
            return f"{where}: must be an object"
    elif kind == "direction":
        if value not in ("maximize", "minimize"):
            return f"{where}: must be 'maximize' or 'minimize', not {value!r}"
    elif kind in ("list[str]", "list[obj]"):
        item = "str" if kind == "list[str]" else "obj"
        if not isinstance(value, list):
            return f"{where}: must be a list"
        for i, element in enumerate(value):
            problem = _check(f"{where}[{i}]", element, item)
            if problem:
                return problem
    elif kind == "metrics":
        if not isinstance(value, dict):
            return f"{where}: must be an object of metric name to number"
        for name, number in value.items():
            if not name or len(name) > MAX_NAME_LENGTH:
                return f"{where}: metric names must have 1 to {MAX_NAME_LENGTH} characters"
            if not _is_number(number):
                return f"{where}.{name}: must be a number"
    elif kind == "steps":
        return _check_steps(where, value)
    elif kind == "rows":
        return _check_rows(where, value)
    return None


def _check_steps(where: str, value: Any) -> str | None:
    if not isinstance(value, list):
        return f"{where}: must be a list of {{step, metrics}}"
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) != {"step", "metrics"}:
            return f"{where}[{i}]: must be an object with exactly step and metrics"
        problem = _check(f"{where}[{i}].step", entry["step"], "int") or _check(
            f"{where}[{i}].metrics", entry["metrics"], "metrics"
        )
        if problem:
            return problem
    return None


def _check_rows(where: str, value: Any) -> str | None:
    if not isinstance(value, list):
        return f"{where}: must be a list of prediction rows"
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            return f"{where}[{i}]: must be an object"
        for name in _ROW_FIELDS:
            if name not in row:
                return f"{where}[{i}].{name}: required"
        for name, field_value in row.items():
            kind = _ROW_FIELDS.get(name) or _ROW_OPTIONAL.get(name)
            if kind is None:
                return f"{where}[{i}].{name}: not a field of a prediction row"
            if field_value is None and name in _ROW_OPTIONAL:
                continue
            problem = _check(f"{where}[{i}].{name}", field_value, kind)
            if problem:
                return problem
    return None


def new_id() -> str:
    """A fresh uuid4 as 32 hex digits: the id of a write, or of an object a write creates.
    (``uuid.uuid4().hex`` at a third of its cost: one is made for every logged step.)"""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def make_write(op: str, data: dict[str, Any]) -> dict[str, Any]:
    """The envelope of one write, with a fresh id and the current time."""
    return {"id": new_id(), "op": op, "data": data, "time": time.time()}


def wire_number(value: float) -> float | str:
    """``value`` as JSON can hold it: itself when finite, else its :data:`NONFINITE` name."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"


def read_number(value: Any) -> Any:
    """A number read back from the service: a :data:`NONFINITE` name as the float it names."""
    return float(value) if value.__class__ is str and value in NONFINITE else value


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float (nested too) as its :data:`NONFINITE` name."""
    if isinstance(value, float):
        return wire_number(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


_STRICT = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def encode_json(value: Any) -> str:
    """Compact, strict JSON (no NaN tokens): the common case at the C encoder's speed, a value
    with NaN or infinity in it through :func:`json_safe` first."""
    try:
        return _STRICT(value)
    except ValueError:
        return _STRICT(json_safe(value))
