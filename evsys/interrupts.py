"""Signals that end an arm, and how they travel to its record.

While an arm runs (:func:`signals_raise`), SIGTERM and SIGINT (a cancel, Ctrl-C, ``scancel``) and
the timeout signal (SIGUSR2: Slurm's warning before the time limit, as submitit asks for it) raise
:class:`ArmInterrupted` in the main thread. It is a ``BaseException``, like ``KeyboardInterrupt``,
so no ``except Exception`` on its way out (best-effort eval, a retry loop, a library) swallows it:
the runner records the arm ``timeout`` or ``cancelled`` with what it logged so far and re-raises,
and ``evsys resume`` runs it again. submitit's own timeout exception (``UncompletedJobError``, a
``RuntimeError``) and ``KeyboardInterrupt`` count as interruptions too (:func:`interruption`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

log = logging.getLogger(__name__)

InterruptStatus = Literal["timeout", "cancelled"]
PREEMPT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"
"""submitit's setting for the signal Slurm sends before the time limit (default USR2)."""


class ArmInterrupted(BaseException):  # noqa: N818 - named like KeyboardInterrupt, its sibling
    """The arm was stopped from outside: ``status`` is ``timeout`` or ``cancelled``."""

    def __init__(self, status: InterruptStatus, reason: str, signum: int | None = None):
        super().__init__(status, reason, signum)  # the args pickle it back (submitit, spawn)
        self.status: InterruptStatus = status
        self.reason = reason
        self.signum = signum

    def __str__(self) -> str:
        return self.reason

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal (128 + its number), else 1."""
        return 128 + self.signum if self.signum else 1


class ArmInterruptedError(RuntimeError):
    """An :class:`ArmInterrupted` as the ordinary error a launcher passes back: submitit writes a
    job's result only for an ``Exception``, and Hydra turns one into a failed job return."""

    def __init__(self, status: InterruptStatus, message: str):
        super().__init__(status, message)  # both in args: it pickles back whole
        self.status: InterruptStatus = status
        self.message = message

    def __str__(self) -> str:
        return self.message


def in_submitit_job() -> bool:
    """Whether this process is a job submitit started (local or Slurm)."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


def interruption(exc: BaseException) -> ArmInterrupted | None:
    """The interruption ``exc`` stands for, or None when it is a real error."""
    if isinstance(exc, ArmInterrupted):
        return exc
    if isinstance(exc, ArmInterruptedError):
        return ArmInterrupted(exc.status, exc.message)
    if isinstance(exc, KeyboardInterrupt):
        return ArmInterrupted("cancelled", "interrupted (KeyboardInterrupt)", signal.SIGINT)
    if _is_submitit_timeout(exc):
        return ArmInterrupted("timeout", f"submitit: {exc}")
    return None


def reraise_if_interruption(exc: BaseException) -> None:
    """For ``except Exception`` blocks that keep going on errors: never on an interruption."""
    if interruption(exc) is not None:
        raise exc


def _is_submitit_timeout(exc: BaseException) -> bool:
    # By name, so that evsys need not import submitit (the slurm extra) to recognise it.
    return any(
        cls.__name__ == "UncompletedJobError" and cls.__module__.startswith("submitit")
        for cls in type(exc).__mro__
    )


def timeout_signal() -> signal.Signals:
    name = os.environ.get(PREEMPT_SIGNAL_ENV, "USR2").upper().removeprefix("SIG")
    return getattr(signal.Signals, f"SIG{name}", signal.SIGUSR2)


class _Handler:
    """Raises :class:`ArmInterrupted`; a signal that comes while the record is being written
    (``deferred``) waits until it is written."""

    def __init__(self) -> None:
        self.deferred = False
        self.pending: ArmInterrupted | None = None

    def __call__(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        status: InterruptStatus = "timeout" if signum == timeout_signal() else "cancelled"
        reason = {"timeout": "timed out", "cancelled": "cancelled"}[status]
        stop = ArmInterrupted(status, f"{reason} ({name})", signum)
        if self.deferred:  # the record is being written: it goes on, then the arm ends
            log.warning("%s while recording the arm: it ends right after", name)
            self.pending = self.pending or stop
            return
        log.warning("the arm received %s: recording it %s", name, status)
        raise stop


_active: list[_Handler] = []


@contextmanager
def signals_raise() -> Iterator[None]:
    """Inside: SIGTERM, SIGINT and the timeout signal raise :class:`ArmInterrupted`.

    Only in the main thread (the only one Python delivers signals to); elsewhere, and for nested
    uses, the handlers already in place stay. The previous handlers come back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = _Handler()
    wanted = {signal.SIGTERM, signal.SIGINT, timeout_signal()}
    previous = {sig: signal.signal(sig, handler) for sig in wanted}
    _active.append(handler)
    try:
        yield
    finally:
        _active.remove(handler)
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Inside: a signal is held back, then raised on exit (writing a record must finish)."""
    handler = _active[-1] if _active else None
    if handler is None or handler.deferred:
        yield
        return
    handler.deferred = True
    try:
        yield
    finally:
        handler.deferred = False
        pending, handler.pending = handler.pending, None
        if pending is not None:
            raise pending
