"""What differs between two runs, from their ``run_result.json``: the records read from disk.

The diff itself is :mod:`evsys.run_diff`'s (pure functions of the records, which the dashboard
uses too); its names stay importable from this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evsys.errors import DataError
from evsys.run.record import RUN_RESULT
from evsys.run_diff import RunDiff as RunDiff
from evsys.run_diff import diff_runs as diff_runs
from evsys.run_diff import flatten as flatten
from evsys.run_diff import show_metric as show_metric
from evsys.run_diff import show_value as show_value
from evsys.run_diff import summary as summary


def load_record(path: str | Path) -> dict[str, Any]:
    """The record of a run, from its directory or its ``run_result.json``; DataError otherwise."""
    path = Path(path)
    file = path / RUN_RESULT if path.is_dir() else path
    if not file.is_file():
        where = f"{path} has no {RUN_RESULT}" if path.is_dir() else f"{path} does not exist"
        raise DataError(f"{where}; expected a run directory or its {RUN_RESULT}")
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{file}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: cannot be read ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise DataError(f"{file}: not a run record (no 'config' object)")
    if not isinstance(record.get("metrics") or {}, dict):
        raise DataError(f"{file}: 'metrics' is not an object")
    record["_path"] = str(file)
    return record
