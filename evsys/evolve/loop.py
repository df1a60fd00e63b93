"""The evolution loop: generation after generation, propose → validate → pre-flight → launch.

A generation is a batch of arms the proposer proposes from every arm before it. Each proposal is
confined to the search space, then composed and validated like a hand-written sweep's arm
(:mod:`evsys.evolve.admission`); an illegal one is recorded with why, counted
(``proposals_illegal``), fed back, never launched. The legal ones are launched together by the
configured Hydra launcher (:func:`evsys.sweep.sweeper.run_pending_arms`) and recorded as any arm
is; a failed arm is fed back as a bad result, and the loop goes on. A generation that gets no arm
ends the loop, with exit 1 when the proposer failed (unreachable, or every answer illegal).

Every proposed arm and its result is stored (:mod:`evsys.evolve.store`) before and after it
runs, and each generation is marked complete once all its arms ended. ``evsys resume <dir>``
replays the sweep: complete generations are skipped, the arms of an interrupted one are launched
again unless their record says they completed, then the loop goes on — no finished arm runs
twice. The budget: ``generations``, ``population`` (arms per generation), ``max_arms`` and
``max_wall_s`` (no generation starts after it).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from evsys.errors import ConfigError
from evsys.evolve.admission import admit, arm_name
from evsys.evolve.context import EvolutionContext, preflight_evolution, prepare
from evsys.evolve.settings import EvolveSettings
from evsys.evolve.store import COMPLETE, FAILED, PROPOSED, EvolveStore, StoredArm

__all__ = ["EvolutionContext", "preflight_evolution", "prepare", "run_evolution"]

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
EXIT_PROPOSER_FAILED = 1
FINGERPRINT = "fingerprint"


# -- the loop ------------------------------------------------------------------------------------


def run_evolution(
    *,
    config: DictConfig,
    launcher: Any,
    arguments: list[str],
    settings: EvolveSettings,
    max_batch_size: int | None = None,
) -> int:
    """Run (or resume) the evolve sweep of ``config``; returns the exit code (2 bad input, 1 an
    arm did not complete, 0 every arm completed)."""
    from evsys.evolve.dashboard import DashboardGenerations, load_tracker
    from evsys.output_dirs import claim, release
    from evsys.report import format_problems
    from evsys.sweep.dashboard import open_sweep_experiment
    from evsys.sweep.sweeper import finish_sweep

    sweep_dir = Path(config.hydra.sweep.dir)
    config_name = config.hydra.job.config_name
    try:
        context = prepare(settings, arguments, config_name)
        claim(sweep_dir, fresh=False)
    except ConfigError as exc:
        print(format_problems(exc.problems, header=exc.header), file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")  # what `evsys resume` replays
        store = EvolveStore.for_sweep(sweep_dir, settings.storage)
        experiment = None
        try:
            plan = {"sweeper": "evolve", "settings": settings.model_dump(mode="json")}
            experiment = open_sweep_experiment(sweep_dir, [context.base_arm], plan, None)
            tracker = (
                DashboardGenerations(experiment, settings.proposer.kind)
                if experiment is not None
                else load_tracker(settings.tracker, sweep_dir)
            )
            loop = Evolution(
                sweep_dir, config, launcher, settings, context, store, max_batch_size, tracker
            )
        except ConfigError as exc:  # the proposer or the dashboard refused (its client, say)
            store.close()
            if experiment is not None:
                experiment.close()
            print(format_problems(exc.problems, header=exc.header), file=sys.stderr)
            return EXIT_BAD_INPUT
        try:
            refused = loop.check_resumable()
            if refused:
                print(refused, file=sys.stderr)
                return EXIT_BAD_INPUT
            loop.run()
            summary = loop.write_outputs()
            if experiment is not None:
                experiment.conclude(summary)
                experiment = None
        finally:
            store.close()
            if experiment is not None:
                experiment.close()
    finally:
        release(sweep_dir)
    print(f"evsys: proposals refused as illegal: {context.illegal}")
    code = finish_sweep(summary)
    return max(code, EXIT_PROPOSER_FAILED) if loop.proposer_failure else code


class ProposerGaveNothing(Exception):
    """A generation got no legal proposal after every round: the loop ends there. ``failed``:
    because the proposer failed (unreachable, or every answer illegal), not because every legal
    answer repeated an earlier arm."""

    def __init__(self, message: str, failed: bool):
        super().__init__(message)
        self.message, self.failed = message, failed


class Evolution:
    """One session of the loop over a sweep directory and its store."""

    def __init__(
        self,
        sweep_dir: Path,
        config: DictConfig,
        launcher: Any,
        settings: EvolveSettings,
        context: EvolutionContext,
        store: EvolveStore,
        max_batch_size: int | None,
        tracker: Any = None,
    ):
        from evsys.evolve.proposers import make_proposer

        self.sweep_dir, self.config, self.launcher = sweep_dir, config, launcher
        self.settings, self.context, self.store = settings, context, store
        self.max_batch_size = max_batch_size
        context.store = store
        self.arms = store.load_arms()
        context.illegal = len(store.load_illegal())  # earlier sessions' count too
        self.proposer = make_proposer(settings, context)
        self.proposer.replay(self.arms)
        self.tracker = tracker
        self.checked: dict[str, Any] = {}  # arm name → its pre-flighted Arm
        self.started = time.monotonic()
        self.proposer_failure: str | None = None

    def check_resumable(self) -> str | None:
        fingerprint = self.context.fingerprint(self.settings)
        stored = self.store.get_meta(FINGERPRINT)
        if stored is None:
            self.store.set_meta(FINGERPRINT, fingerprint)
            return None
        if stored != fingerprint:
            return (
                f"evsys: cannot resume {self.sweep_dir}: its fixed overrides, search space, "
                "objectives or proposer changed since the sweep started; start a new sweep, or "
                "restore them"
            )
        return None

    def run(self) -> None:
        complete = self.store.complete_generations()
        for generation in range(self.settings.generations):
            if generation in complete:
                continue
            stop = self._budget_spent()
            if stop:
                log.warning("evolve: %s; no generation %d", stop, generation)
                print(f"evsys: evolve stops before generation {generation}: {stop}")
                return
            try:
                self.run_generation(generation)
            except ProposerGaveNothing as stop:
                print(f"evsys: evolve stops: {stop.message}", file=sys.stderr)
                if stop.failed:
                    self.proposer_failure = stop.message
                return

    def _budget_spent(self) -> str | None:
        elapsed = time.monotonic() - self.started
        if self.settings.max_wall_s is not None and elapsed >= self.settings.max_wall_s:
            return f"max_wall_s={self.settings.max_wall_s} spent ({elapsed:.1f} s)"
        if self.settings.max_arms is not None and len(self.arms) >= self.settings.max_arms:
            return f"max_arms={self.settings.max_arms} reached"
        return None

    # -- one generation -----------------------------------------------------------------------

    def run_generation(self, generation: int) -> None:
        self.store.start_generation(generation)
        self._tell_tracker("create_generation", generation=generation)
        # Arms an interrupted session proposed for this generation run (again) as they were.
        pending: list[tuple[StoredArm, Any]] = [
            (arm, None) for arm in self.arms if arm.generation == generation
        ]
        illegal, dropped, failures = self.context.illegal, self.context.dropped, []
        rounds = self.proposer.rounds  # asks to fill the generation with new legal arms
        for _ in range(rounds):
            wanted = self._room(generation)
            if wanted <= 0:
                break
            names = [arm_name(generation, len(self.arms) + i) for i in range(wanted)]
            history = [a for a in self.arms if a.state != PROPOSED]
            try:
                proposals = self.proposer.propose(generation, names, history)
            except Exception as exc:  # an LLM that cannot be reached: this round proposes nothing
                log.error("evolve: the proposer failed in generation %d: %s", generation, exc)
                print(
                    f"evsys: the proposer failed in generation {generation}: {exc}", file=sys.stderr
                )
                proposals, failures = [], [*failures, str(exc)]
            for proposal, arm in admit(self, generation, proposals, wanted):
                self.store.add_arm(arm)
                self.arms.append(arm)
                pending.append((arm, proposal))
        if not pending:
            illegal, dropped = self.context.illegal - illegal, self.context.dropped - dropped
            raise _gave_nothing(generation, failures, illegal, dropped)
        self._launch(generation, pending)
        self.store.complete_generation(generation)
        self._write_lineage()
        parents = {name for _, proposal in pending if proposal for name in proposal.parents}
        self._tell_tracker(
            "update_generation",
            generation=generation,
            arms={arm.name: arm.state for arm, _ in pending},
            best=[a.name for a in self.context.best_arms(self.arms, 1)],
            parents=sorted(parents),
            lineage={arm.name: self._lineage_of(arm) for arm, _ in pending},
        )

    def _room(self, generation: int) -> int:
        here = sum(1 for a in self.arms if a.generation == generation)
        wanted = self.settings.population - here
        if self.settings.max_arms is not None:
            wanted = min(wanted, self.settings.max_arms - len(self.arms))
        return wanted

    def _launch(self, generation: int, pending: list[tuple[StoredArm, Any]]) -> None:
        from evsys.sweep.plan import preflight
        from evsys.sweep.sweeper import is_completed, run_pending_arms

        # Arms admitted in this session were checked then; an interrupted session's, now.
        unchecked = [arm for arm, _ in pending if arm.name not in self.checked]
        fresh = preflight([a.overrides for a in unchecked], config_name=self.context.config_name)
        self.checked.update({a.name: arm for a, arm in zip(unchecked, fresh, strict=True)})
        checked = [self.checked[arm.name] for arm, _ in pending]
        runnable = []
        for (stored, _), arm in zip(pending, checked, strict=True):
            arm.index, arm.name = stored.number, stored.name
            if arm.problems:  # its config no longer validates (a resumed sweep): recorded failed
                stored.state, stored.error = FAILED, "; ".join(p.message for p in arm.problems)
            elif not is_completed(self.sweep_dir / stored.name):
                runnable.append(arm)
        self._write_plan(checked_by_name=self.checked)
        run_pending_arms(self.sweep_dir, self.launcher, runnable, self.max_batch_size)
        for stored, proposal in pending:
            self._read_result(stored)
            self.store.finish_arm(stored)
            self.proposer.observe(stored, proposal)
            self._record_lineage(stored)

    def _read_result(self, arm: StoredArm) -> None:
        from evsys.run.record import RUN_RESULT
        from evsys.sweep.aggregate import number

        try:
            record = json.loads((self.sweep_dir / arm.name / RUN_RESULT).read_text())
        except (OSError, ValueError):
            arm.state, arm.error = FAILED, arm.error or "the arm left no run_result.json"
            return
        arm.run_id = record.get("run_id")
        metrics = record.get("metrics") or {}
        if record.get("status") != "completed":
            arm.state, arm.error = FAILED, record.get("error") or f"status {record.get('status')}"
            return
        values = [number(metrics.get(o.metric)) for o in self.context.objectives]
        lacking = [
            o.metric for o, v in zip(self.context.objectives, values, strict=True) if v is None
        ]
        if lacking:
            arm.state, arm.error = FAILED, f"completed without a number for {', '.join(lacking)}"
            return
        arm.state, arm.values, arm.error = (
            COMPLETE,
            [float(v) for v in values if v is not None],
            None,
        )

    def _record_lineage(self, arm: StoredArm) -> None:
        """``lineage`` in the arm's run_result.json: its generation and parents."""
        from evsys.files import write_json_atomically
        from evsys.run.record import RUN_RESULT

        path = self.sweep_dir / arm.name / RUN_RESULT
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        record["lineage"] = self._lineage_of(arm)
        write_json_atomically(path, record)

    def _lineage_of(self, arm: StoredArm) -> dict[str, Any]:
        """Generation, parents, the mutation and the delta against each parent."""
        from evsys.evolve.ancestry import ancestry, base_point

        by_name = {a.name: a for a in self.arms}
        runs = {a.name: a.run_id for a in self.arms}
        parent = next((runs[p] for p in arm.parents if runs.get(p)), None)
        metrics = [o.metric for o in self.context.objectives]
        return {
            "generation": arm.generation,
            "parent_arms": arm.parents,
            "parent_experiment_id": parent,
            "proposer": self.settings.proposer.kind,
            **ancestry(arm, by_name, base_point(self.context), metrics),
        }

    # -- outputs ------------------------------------------------------------------------------

    def _write_plan(self, checked_by_name: dict[str, Any]) -> None:
        from evsys.evolve.lineage import write_plan

        write_plan(
            self.sweep_dir, self.config, self.settings, self.context, self.arms, checked_by_name
        )

    def _write_lineage(self) -> None:
        from evsys.evolve.lineage import write_lineage

        write_lineage(self.sweep_dir, self.lineage())

    def lineage(self) -> dict[str, Any]:
        return {
            "proposer": self.settings.proposer.kind,
            "objectives": [o.model_dump() for o in self.context.objectives],
            "fixed_overrides": self.context.base,
            "generations_complete": sorted(self.store.complete_generations()),
            "proposals_illegal": self.context.illegal,
            "stopped": self.proposer_failure,
            "refused": self.store.load_illegal(),
            "dropped": self.store.load_dropped(),
            "arms": [
                {
                    "name": arm.name,
                    **self._lineage_of(arm),
                    "overrides": arm.overrides,
                    "state": arm.state,
                    "values": arm.values,
                    "error": arm.error,
                    "run_id": arm.run_id,
                }
                for arm in self.arms
            ],
        }

    def write_outputs(self) -> Any:
        """The sweep's usual outputs, plus lineage.json, evolution.png and the lineage tree."""
        from evsys.evolve.lineage import finish_outputs
        from evsys.sweep.aggregate import write_sweep_outputs

        if not (self.sweep_dir / "sweep_plan.json").exists():
            self._write_plan({})
        summary = write_sweep_outputs(self.sweep_dir)
        finish_outputs(self.sweep_dir, self.lineage())
        return summary

    def _tell_tracker(self, method: str, **payload: Any) -> None:
        call = getattr(self.tracker, method, None)
        if call is None:
            return
        try:
            call(sweep_dir=str(self.sweep_dir), **payload)
        except Exception as exc:  # the dashboard being down never stops the evolution
            log.warning("evolve: tracker %s failed: %s", method, exc)


def _gave_nothing(
    generation: int, failures: list[str], illegal: int, dropped: int
) -> ProposerGaveNothing:
    """Why a generation got no arm: a proposer that failed is the sweep's failure; one whose
    legal answers all repeated earlier arms has exhausted the space."""
    where = f"no new legal proposal for generation {generation}"
    if dropped and not failures:
        why = f"{dropped} legal proposal(s) repeated earlier arms: the space may be exhausted"
        return ProposerGaveNothing(f"{where} ({why}; {illegal} refused as illegal)", False)
    if failures and not illegal and not dropped:
        why = f"the proposer could not answer ({len(failures)} tries; last: {failures[-1]})"
        return ProposerGaveNothing(f"{where}: {why}", True)
    failed = f"; the proposer failed {len(failures)} time(s)" if failures else ""
    why = f"every answer was illegal ({illegal} refused, see 'refused' in lineage.json){failed}"
    return ProposerGaveNothing(f"{where}: {why}", True)
