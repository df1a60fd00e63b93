"""This process's exit code: how the arms it ran, the sweep it drove and its deploys ended.

Hydra drops task return values, and with submitit the arms even run in other processes, so each
part notes its outcome here as it ends; ``python -m evsys`` (:mod:`evsys.app`) exits with
:func:`exit_code`. Below the app and the sweepers, which both note what they saw.
"""

from __future__ import annotations

from typing import Any

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2

_outcomes: list[Any] = []  # the RunOutcome of each arm this process ran
_sweep_exit_codes: list[int] = []
# Exit codes of the deploys a single run's `deploy:` section asked for (1: it failed).
_deploy_exit_codes: list[int] = []


def note_outcome(outcome: Any) -> None:
    """An arm this process ran ended (``outcome.result.status``, ``outcome.bad_input``)."""
    _outcomes.append(outcome)


def note_sweep_exit_code(code: int) -> None:
    _sweep_exit_codes.append(code)


def note_deploy_exit_code(code: int) -> None:
    _deploy_exit_codes.append(code)


def exit_code() -> int:
    if _sweep_exit_codes:
        return max(_sweep_exit_codes)
    failed = [o for o in _outcomes if o.result.status != "completed"]
    if not failed:  # a run that did not complete deployed nothing
        return max(_deploy_exit_codes, default=EXIT_OK)
    return EXIT_BAD_INPUT if any(o.bad_input for o in failed) else EXIT_RUN_FAILED
