"""Undoing a deploy that failed: what it created is removed, newest first; what cannot be removed
is named, with how to remove it by hand, in the error and in the run's recorded deploy entry.

A deployer registers each thing right after creating it (``undo.created(...)``) and runs its
steps under ``with undo:``; when a step raises, the removals run and a :class:`DeployFailed`
carries the original error plus the :class:`Leftover` of every removal that failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from evsys.deploy.protocol import Deployment
from evsys.errors import BackendError, ConfigError
from evsys.interrupts import interruption

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Leftover:
    """Something a failed deploy created and could not remove."""

    what: str
    """What it is, with its id (``Fireworks model accounts/acme/models/x``)."""
    remove: str
    """How to remove it: the command, or the API call."""
    why: str = ""
    """Why the removal failed."""

    def line(self) -> str:
        return f"{self.what} (remove it with: {self.remove})"


class DeployFailed(BackendError):
    """A deploy that failed after creating something; ``leftovers`` is what is still there."""

    def __init__(self, target: str, error: BaseException, leftovers: list[Leftover]):
        self.target, self.leftovers = target, leftovers
        self.error = str(error) or type(error).__name__
        message = self.error
        if leftovers:
            message += f" -- cleanup failed, still there: {_lines(leftovers)}"
        super().__init__(message)

    def entry(self) -> Deployment:
        """The deploy entry to record: what is left, and how to remove it."""
        return Deployment(
            target=self.target,
            endpoint="",
            model_id="",
            status="failed",
            details={"error": self.error, "leftovers": [asdict(item) for item in self.leftovers]},
        )


class Undo:
    """The removals of what one deploy attempt created; run, newest first, when it fails."""

    def __init__(self, target: str):
        self.target = target
        self._steps: list[tuple[str, str, Callable[[], None]]] = []

    def created(self, what: str, remove_hint: str, remove: Callable[[], None]) -> None:
        """Register ``what`` (just created): ``remove()`` removes it, ``remove_hint`` says how
        to remove it by hand should ``remove()`` fail. Registered once however often told."""
        if all(step[0] != what for step in self._steps):
            self._steps.append((what, remove_hint, remove))

    def forget(self, what: str) -> None:
        """``what`` is gone already (removed on purpose): nothing to undo for it."""
        self._steps = [step for step in self._steps if step[0] != what]

    def __enter__(self) -> Undo:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None:
            return
        leftovers = self.unwind()
        if interruption(error) is not None or not isinstance(error, Exception):
            if leftovers:  # an interruption stays one (it ends the process): logged at least
                log.error("deploy interrupted; still there: %s", _lines(leftovers))
            return
        if isinstance(error, ConfigError) and not leftovers:
            return  # bad input stays bad input (exit 2): nothing was left behind
        raise DeployFailed(self.target, error, leftovers) from error

    def unwind(self) -> list[Leftover]:
        """Remove everything registered, newest first; the leftovers of removals that failed."""
        leftovers: list[Leftover] = []
        while self._steps:
            what, hint, remove = self._steps.pop()
            try:
                remove()
            except Exception as exc:  # one removal failing does not stop the others
                log.debug("could not remove %s", what, exc_info=exc)
                leftovers.append(Leftover(what, hint, str(exc) or type(exc).__name__))
        return leftovers


def failed_entry(error: Any) -> Deployment | None:
    """The entry to record for a deploy that raised ``error``: one that left something behind,
    else None (a failed deploy that cleaned up after itself is not recorded)."""
    if isinstance(error, DeployFailed) and error.leftovers:
        return error.entry()
    return None


def _lines(leftovers: list[Leftover]) -> str:
    return "; ".join(item.line() for item in leftovers)
