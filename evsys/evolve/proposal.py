"""What a proposer proposes: one arm's override lines, with what it needs to replay them.

Its own module, below :mod:`evsys.evolve.proposers` and the proposers in it, which all use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Proposal:
    """One proposed arm: the override lines it adds to the sweep's fixed overrides."""

    name: str
    overrides: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    """Persisted with the arm: what the proposer needs to replay it."""
    rationale: str = ""
    handle: Any = None
    """The proposer's live object for it (Optuna's trial); not persisted."""
