"""What a proposal may set: the dimensions of the declared search space, each value read as data.

A proposal (an LLM's answer, or any proposer's) is data, never configuration of the machinery.
Each of its lines must be ``key=value`` where ``key`` is exactly one declared dimension and
``value`` parses, without Hydra's grammar and without OmegaConf, as a value of that dimension:
a number inside its interval (ASCII digits only; no ``nan``/``inf``), or the text of one of its
choices. Everything else is refused before anything is composed — ``hydra.*``, ``+``/``~``, the
launcher/log_store/data_store/deploy/callbacks groups, names, paths, sweep expressions — and a
value holding ``${`` is refused outright, so no interpolation is ever resolved and no environment
value can reach a record or a prompt. The arm then gets lines this module writes from the parsed
values (:meth:`Dimension.override`), never the proposer's text.

Problems quote the line *as written* (truncated), so the next prompt and the records say what
the proposer sent, not what it would have resolved to.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from evsys.errors import Problem
from evsys.evolve.space import CHOICE, INT, Dimension, format_value

# Config groups and keys that run the machinery: where credentials go, where files are written,
# what runs after the arm. A search space may not vary them (checked at pre-flight).
MACHINERY = (
    "hydra",
    "launcher",
    "log_store",
    "data_store",
    "deploy",
    "callbacks",
    "name",
    "output_dir",
    "parent_experiment_id",
)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", re.ASCII)
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_QUOTED_MAX = 160


@dataclass
class Confined:
    """A proposal's lines, read: the values it sets (dimension key → value) and why any line
    was refused. Legal only when ``problems`` is empty."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def as_written(text: Any) -> str:
    """A proposer's text quoted for a message: JSON-escaped (control characters and quotes
    visible, unicode kept), cut at a readable length."""
    quoted = json.dumps(str(text), ensure_ascii=False)
    return quoted if len(quoted) <= _QUOTED_MAX else quoted[: _QUOTED_MAX - 2] + '…"'


def confine(lines: Any, dimensions: list[Dimension]) -> Confined:
    """Read each line of a proposal against the search space; never resolves anything."""
    result = Confined()
    by_key = {d.key: d for d in dimensions}
    if not isinstance(lines, list):
        result.problems.append(f"{as_written(lines)}: expected a list of 'key=value' lines")
        return result
    for line in lines:
        problem = _read_line(line, by_key, result.values)
        if problem:
            result.problems.append(f"{as_written(line)}: {problem}")
    return result


def _read_line(line: Any, by_key: dict[str, Dimension], values: dict[str, Any]) -> str | None:
    if not isinstance(line, str):
        return "expected a 'key=value' string"
    if "${" in line:
        return "an interpolation (${…}) is refused: a proposal is data, never resolved"
    key, equals, text = line.partition("=")
    key = key.strip()
    if not equals:
        return "expected 'key=value'"
    if key.startswith(("+", "~")):
        return "adding (+) or deleting (~) config keys is refused: a proposal sets values only"
    if key.split(".")[0].split("/")[0] == "hydra":
        return "Hydra's own settings are not the proposer's to change"
    allowed = ", ".join(by_key) or "(none declared)"
    if not _KEY.fullmatch(key) or key not in by_key:
        return f"not a dimension of the search space; a proposal may set only: {allowed}"
    if key in values:
        return "set twice in one proposal"
    try:
        values[key] = read_value(by_key[key], text.strip())
    except ValueError as exc:
        return str(exc)
    return None


def read_value(dimension: Dimension, text: str) -> Any:
    """``text`` as a value of ``dimension``, parsed as plain data; ValueError says why not."""
    if dimension.kind == CHOICE:
        return _read_choice(dimension, text)
    number = _read_number(text, integer=dimension.kind == INT)
    low, high = dimension.low, dimension.high
    assert low is not None and high is not None
    if isinstance(number, float):  # a sampler's exp(log(bound)) may round a hair past it
        slack = 1e-12 * max(abs(low), abs(high))
        number = high if high < number <= high + slack else number
        number = low if low - slack <= number < low else number
    if not low <= number <= high:
        raise ValueError(f"outside the search space: {dimension.describe()}")
    if dimension.step and not _on_step(number, low, dimension.step):
        raise ValueError(f"not on the search space's step {dimension.step} from {low}")
    return number


def _read_number(text: str, *, integer: bool) -> int | float:
    if integer:
        if not _INT.fullmatch(text):
            raise ValueError("expected an integer (ASCII digits), one value, no sweep")
        return int(text)
    if not _FLOAT.fullmatch(text):
        raise ValueError("expected a number (ASCII digits), one value, no sweep")
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _on_step(number: float, low: float, step: float) -> bool:
    steps = (number - low) / step
    return abs(steps - round(steps)) < 1e-9


def _read_choice(dimension: Dimension, text: str) -> Any:
    for choice in dimension.choices:
        if text in _spellings(choice):
            return choice
    numeric = [
        c for c in dimension.choices if isinstance(c, int | float) and not isinstance(c, bool)
    ]
    if numeric and _FLOAT.fullmatch(text):
        number = float(text)
        match = next((c for c in numeric if math.isclose(c, number, rel_tol=1e-12)), None)
        if match is not None:
            return match
    raise ValueError(f"not one of the search space's choices: {dimension.describe()}")


def _spellings(choice: Any) -> set[str]:
    """How a proposer may write a choice: as the override grammar prints it, or plain."""
    spellings = {format_value(choice), str(choice)}
    if isinstance(choice, bool) or choice is None:
        spellings |= {s.lower() for s in spellings} | {s.capitalize() for s in spellings}
    return spellings


def override_lines(confined: Confined, dimensions: list[Dimension]) -> list[str]:
    """The lines an arm gets for a legal proposal, written here from the parsed values, in
    the order of the search space."""
    return [d.override(confined.values[d.key]) for d in dimensions if d.key in confined.values]


def machinery_problems(dimensions: list[Dimension]) -> list[Problem]:
    """Pre-flight: a search space may not vary the machinery (where credentials go, where files
    are written, Hydra itself), nor a key a proposal could not write back as plain data."""
    problems = []
    for dimension in dimensions:
        root = dimension.key.split(".")[0].split("/")[0]
        if root in MACHINERY or "path" in dimension.key.rsplit(".", 1)[-1]:
            message = "a search space may not vary the machinery (Hydra, launcher, stores, "
            message += "deploy, callbacks, names, paths): a proposal is data about the experiment"
        elif not _KEY.fullmatch(dimension.key):
            message = "a search-space key is a plain dotted field name (no +, ~ or /)"
        else:
            continue
        problems.append(
            Problem(path=dimension.key, message=message, source=dimension.source or None)
        )
    return problems
