"""What ``evsys run FILE`` adds for a reference-format file, as the reference's CLI does:
``-o/--output FILE`` writes the JSON summary of the runs, and the exit code is the reference's
(0 when every run completed, else 2; also 2 when a bare success metric names several reported
metrics). Hydra-style runs (``evsys run experiment=x``) keep evsys's codes.

The summary is a list with one entry per run, in the order they were planned: the reference's
``RunResult`` (``run_id``, ``status``, ``metrics``, ``artifacts``, ``error``) with the run's
``name`` and ``run_dir``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2
OUTPUT_FLAGS = ("-o", "--output")
_DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir")


class OutputOptionError(ValueError):
    """``-o`` without a file, or given twice."""


def split_output(rest: list[str]) -> tuple[str | None, list[str]]:
    """``-o FILE`` / ``--output FILE`` / ``--output=FILE`` taken out of the command line."""
    output: str | None = None
    left: list[str] = []
    tokens = iter(rest)
    for token in tokens:
        flag, eq, value = token.partition("=")
        if token in OUTPUT_FLAGS or (eq and flag == "--output"):
            if output is not None:
                raise OutputOptionError(f"{flag} is given twice")
            value = value if eq else next(tokens, "")
            if not value or value.startswith("-"):
                raise OutputOptionError(f"{flag} needs a file: evsys run config.yaml -o out.json")
            output = value
        else:
            left.append(token)
    return output, left


def pinned_dirs(dirs: dict[str, str], overrides: list[str]) -> list[str]:
    """Overrides fixing the run and sweep directories at this moment (the translation's
    ``${now:…}`` resolved), so that the summary can find the records; none where the caller
    chose a directory."""
    chosen = {line.lstrip("+").partition("=")[0] for line in overrides}
    now = dt.datetime.now()
    lines = []
    for key, pattern in dirs.items():
        full = f"hydra.{key}"
        if full in _DIR_KEYS and full not in chosen:
            resolved = pattern.replace("${now:%Y-%m-%d}", now.strftime("%Y-%m-%d"))
            resolved = resolved.replace("${now:%H-%M-%S}", now.strftime("%H-%M-%S"))
            lines.append(f"{full}={json.dumps(resolved)}")
    return lines


def directory_of(overrides: list[str], multirun: bool) -> Path | None:
    """The run (or sweep) directory the last of ``overrides`` sets."""
    key = _DIR_KEYS[1] if multirun else _DIR_KEYS[0]
    value = None
    for line in overrides:
        name, _, text = line.lstrip("+").partition("=")
        if name == key:
            value = text
    if value is None or "${" in value:
        return None
    return Path(value.strip("'\""))


def summary(directory: Path | None, multirun: bool) -> list[dict[str, Any]]:
    """One entry per run recorded under ``directory``, in the planned order."""
    if directory is None or not directory.is_dir():
        return []
    if not multirun:
        return [_entry(directory, directory.name)]
    plan = _read(directory / "sweep_plan.json") or {}
    names = [arm.get("name") for arm in plan.get("arms") or [] if isinstance(arm, dict)]
    return [_entry(directory / name, name) for name in names if isinstance(name, str)]


def ambiguity(metric: str, entries: list[dict[str, Any]]) -> str | None:
    """Whether ``metric`` (a bare name) names several metrics the runs reported (see
    :mod:`evsys.sweep.metric_names`)."""
    from types import SimpleNamespace

    from evsys.sweep.metric_names import ambiguity as metric_ambiguity

    runs = [SimpleNamespace(status=e["status"], metrics=e["metrics"]) for e in entries]
    return metric_ambiguity(metric, runs)


def write_summary(path: str, entries: list[dict[str, Any]]) -> None:
    from evsys.files import write_text_atomically

    text = json.dumps(entries, indent=2, default=str)
    print(text)
    write_text_atomically(Path(path), text + "\n")


def reference_exit_code(evsys_code: int, entries: list[dict[str, Any]] | None) -> int:
    """0 when every run completed, else 2; an interrupt's own code is kept."""
    if evsys_code not in (EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT):
        return evsys_code
    if evsys_code != EXIT_OK:
        return EXIT_BAD_INPUT
    if entries is not None and any(e.get("status") != "completed" for e in entries):
        return EXIT_BAD_INPUT
    return EXIT_OK


def _entry(run_dir: Path, name: str) -> dict[str, Any]:
    record = _read(run_dir / "run_result.json") or {}
    finished = bool(record.get("finished"))
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    return {
        "run_id": record.get("run_id") or name,
        "name": config.get("name") or name,
        "status": record.get("status", "missing") if finished else "missing",
        "metrics": record.get("metrics") or {},
        "artifacts": record.get("artifacts") or {},
        "error": record.get("error"),
        "run_dir": str(run_dir.resolve()),
    }


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def exit_code_of(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_RUN_FAILED
