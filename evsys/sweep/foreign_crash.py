"""The end of a sweep whose sweeper (not evsys's) raised: one line, its arms aggregated, its
dashboard experiment ``failed``.

Hydra runs another sweeper's loop with no hook for its failure. hydra-optuna-sweeper raises
``No trials are completed yet`` when every trial failed, and a setting it refuses (a storage URL,
a sampler's argument) raises before any trial: either way Hydra skips the callbacks' multirun end
(:class:`evsys.sweep.foreign.ForeignSweepCallback` would aggregate there and close the dashboard
experiment, left ``running``) and prints a traceback. So evsys's app drives such a sweep with
Hydra's exceptions passed through (``HYDRA_FULL_ERROR``) and ends it here:

- the arms that ran are aggregated as at a normal end (``sweep_result.json``, ``summary.md``),
  and the sweep exits with the code its arms give, at least 1 (failed arms exit 1 whichever
  sweeper ran them);
- when no arm ran, the sweeper refused what it was given: exit 2, and the sweep directory made
  for it is removed again;
- the dashboard experiment, if any, ends ``failed``.

Ctrl-C (or a signal) skips the multirun end too: the arms that ran are aggregated the same way
and the experiment ends ``interrupted``, as with evsys's own sweeper; the interruption then goes
on up (the app says it in one line and exits 128 + the signal).

A user who set ``HYDRA_FULL_ERROR=1`` still gets the traceback, after the same ending.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.errors import CompactHydraException

from evsys.interrupts import interruption, signals_deferred
from evsys.sweep.foreign import ForeignSweepCallback, sweeper_target, write_foreign_sweep_outputs
from evsys.sweep.sweeper import EXIT_ARM_FAILED, EXIT_BAD_INPUT, report_sweep

if TYPE_CHECKING:
    from evsys.sweep.aggregate import SweepSummary
    from evsys.sweep.dashboard import SweepExperiment

log = logging.getLogger(__name__)

_FULL_ERROR = "HYDRA_FULL_ERROR"


@contextlib.contextmanager
def sweeper_failure_ended() -> Iterator[None]:
    """Around Hydra's start of a sweep another sweeper drives: an exception its loop raises
    ends the sweep (:func:`end_failed_sweep`) and exits, with one line instead of a traceback."""
    previous = os.environ.get(_FULL_ERROR)
    os.environ[_FULL_ERROR] = "1"  # Hydra re-raises instead of printing a traceback
    try:
        yield
    except BaseException as exc:
        sweep = ForeignSweepCallback.running
        if interruption(exc) is not None:  # Ctrl-C, a signal: on up to the app's one line
            if sweep is not None:
                end_interrupted_sweep(sweep)
            raise
        if not isinstance(exc, Exception):
            raise
        code = end_failed_sweep(sweep, exc) if sweep is not None else None
        if previous == "1":
            raise  # the traceback, as asked
        if code is not None:
            sys.exit(code)
        if not isinstance(exc, CompactHydraException):
            raise  # before the sweep started (composing): what Hydra would show
        print(str(exc), file=sys.stderr)  # as Hydra shows its own one-line errors
        sys.exit(EXIT_ARM_FAILED)
    finally:
        ForeignSweepCallback.running = None
        if previous is None:
            os.environ.pop(_FULL_ERROR, None)
        else:
            os.environ[_FULL_ERROR] = previous


def end_failed_sweep(sweep: ForeignSweepCallback, error: Exception) -> int:
    """Aggregate what ran, end the dashboard experiment ``failed``, say why; the exit code."""
    from evsys.run.record import RUN_RESULT

    assert sweep.config is not None
    config, experiment = sweep.config, sweep.experiment
    sweep.experiment = None
    sweep_dir = Path(config.hydra.sweep.dir)
    reason = f"{type(error).__name__}: {_first_line(error)}"
    print(
        f"evsys: the sweeper ({sweeper_target(config)}) stopped: {reason} "
        f"({_FULL_ERROR}=1 shows where)",
        file=sys.stderr,
    )
    summary = None
    if any(sweep_dir.glob(f"*/{RUN_RESULT}")):
        try:
            summary = write_foreign_sweep_outputs(sweep_dir, config)
        except Exception as exc:  # the arms' own records still say everything
            log.warning("aggregating the arms that ran failed: %s", exc)
    if experiment is not None:
        _fail_experiment(experiment, summary)
    if summary is None:
        # Refused input leaves nothing behind: the sweep directory goes at exit when it was
        # made for this sweep (see evsys.output_dirs), unless a dashboard experiment names it.
        (sweep_dir / "multirun.yaml").unlink(missing_ok=True)
        print("  no arm ran: the sweeper refused its settings", file=sys.stderr)
        return EXIT_BAD_INPUT
    return max(EXIT_ARM_FAILED, report_sweep(summary))


def end_interrupted_sweep(sweep: ForeignSweepCallback) -> None:
    """Aggregate what ran and end the dashboard experiment ``interrupted`` (as evsys's own
    sweeper does), a second signal held back until it is recorded."""
    from evsys.run.record import RUN_RESULT
    from evsys.sweep.aggregate import SWEEP_PLAN

    assert sweep.config is not None
    config, experiment = sweep.config, sweep.experiment
    sweep.experiment = None
    sweep_dir = Path(config.hydra.sweep.dir)
    with signals_deferred():
        summary = None
        if any(sweep_dir.glob(f"*/{RUN_RESULT}")):
            try:
                summary = write_foreign_sweep_outputs(sweep_dir, config)
            except Exception as exc:  # the arms' own records still say everything
                log.warning("aggregating the arms that ran failed: %s", exc)
        if experiment is None:
            return
        if summary is None:
            experiment.end_interrupted()
            return
        try:
            plan = json.loads((summary.sweep_dir / SWEEP_PLAN).read_text(encoding="utf-8"))
            experiment.conclude(summary, sweep_plan=plan, interrupted=True)
        except Exception as exc:  # bookkeeping: the sweep's files hold it all
            log.warning("recording the sweep's interruption on the dashboard failed: %s", exc)
            experiment.end_interrupted()


def _fail_experiment(experiment: SweepExperiment, summary: SweepSummary | None) -> None:
    """The experiment ``failed``, with the arms, best arm and conclusion of what ran, if any."""
    from evsys.sweep.aggregate import SWEEP_PLAN

    try:
        if summary is None:
            experiment.client.update_experiment(experiment.experiment_id, status="failed")
            experiment.close()
            return
        plan = json.loads((summary.sweep_dir / SWEEP_PLAN).read_text(encoding="utf-8"))
        experiment.conclude(summary, sweep_plan=plan, sweeper_failed=True)
    except Exception as exc:  # bookkeeping: the sweep's files hold it all
        log.warning("recording the sweep's failure on the dashboard failed: %s", exc)
        experiment.close()


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"
