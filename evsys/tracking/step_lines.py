"""The hot path's encoder: one ``run.steps`` write as its mirror line, for the common case of
plain finite numbers, at a fraction of building the write and running the JSON encoder on it.

What it does not take (a NaN or infinity, a numpy scalar, an odd name, an empty mapping) it
declines, and the client builds the write the general way (:func:`evsys.tracking.wire.make_write`),
which checks it and spells NaN and infinities as ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping

from evsys.tracking.wire import MAX_INT, MAX_NAME_LENGTH, check_data

_LINE = '{"id":"%s","op":"run.steps","data":{"run_id":%s,"steps":[{"step":%d,"metrics":{%s}}]},"time":%r}\n'
MAX_CACHED_NAMES = 10_000  # metric names repeat every step; a run that makes up new ones forever
# pays json.dumps for those past the cache, nothing worse


class StepLines:
    """Makes ``(write id, line)`` for one step. A write id is this encoder's random 64-bit
    prefix and a counter: unique as a uuid4 is, without asking the OS for randomness per step."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = 0
        self._names: dict[str, str] = {}  # metric name -> '"name":'
        self._run: tuple[str | None, str] = (None, "")  # the last run id (checked), its JSON

    def make(self, run_id: str, step: int, metrics: Mapping[str, float]) -> tuple[str, str] | None:
        """``None`` when the write is not plain (see the module): the caller goes the long way."""
        if type(step) is not int or type(run_id) is not str or not metrics:
            return None
        names = self._names
        parts = []
        for name, value in metrics.items():
            kind = type(value)
            # value - value is 0 for every finite number and NaN for NaN and infinities
            if (kind is not float and kind is not int) or value - value != 0:
                return None
            if kind is int and not -MAX_INT <= value <= MAX_INT:
                return None  # the general path says whether a float holds it
            key = names.get(name)
            if key is None:
                if type(name) is not str or not name or len(name) > MAX_NAME_LENGTH:
                    return None
                key = json.dumps(name) + ":"
                if len(names) < MAX_CACHED_NAMES:
                    names[name] = key
            parts.append(key + repr(value))  # float.__repr__, as the json module writes floats
        if self._run[0] != run_id:
            if check_data("run.steps", {"run_id": run_id, "steps": []}) is not None:
                return None  # a run id the service would refuse: the general path says why
            self._run = (run_id, json.dumps(run_id))
        self._count += 1
        write_id = f"{self._prefix}{self._count:016x}"
        line = _LINE % (write_id, self._run[1], step, ",".join(parts), time.time())
        return write_id, line
