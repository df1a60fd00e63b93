"""The evolution loop: generation after generation, propose → validate → pre-flight → launch.

A generation is a batch of arms the proposer proposes from every arm before it. Each proposal is
composed and validated exactly like an arm of a hand-written sweep (:func:`evsys.sweep.plan.
preflight`); an illegal one is refused — counted (``proposals_illegal``), fed back to the
proposer, never launched. The legal ones are launched together by the configured Hydra launcher
(:func:`evsys.sweep.sweeper.run_pending_arms`: basic, gpus, local_processes, slurm) and recorded
as any arm is; a failed arm is fed back as a bad result with its error, and the loop goes on.

Every proposed arm and its result is stored (:mod:`evsys.evolve.store`) before and after it
runs, and each generation is marked complete once all its arms ended. ``evsys resume <dir>``
replays the sweep: complete generations are skipped, the arms of an interrupted one are launched
again unless their record says they completed, then the loop goes on — no finished arm runs
twice. The budget: ``generations``, ``population`` (arms per generation), ``max_arms`` and
``max_wall_s`` (no generation starts after it).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from evsys.errors import ConfigError, Problem
from evsys.evolve.settings import EvolveSettings, Objective
from evsys.evolve.space import Dimension, check_space, grammar_dimensions, schema_dimensions
from evsys.evolve.store import COMPLETE, FAILED, PROPOSED, EvolveStore, StoredArm

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
FINGERPRINT = "fingerprint"


@dataclass
class EvolutionContext:
    """What the proposers and the loop share about the sweep."""

    config_name: str | None
    base: list[str]
    """The fixed overrides of every arm."""
    dimensions: list[Dimension]
    objectives: list[Objective]
    population: int
    hypothesis: str = ""
    base_arm: Any = None
    """The fixed overrides' arm, pre-flighted (the sweep's experiment on the dashboard)."""
    store: EvolveStore | None = None
    illegal: int = 0
    """Proposals refused as illegal, in every session of the sweep."""
    _schema: dict[str, Any] | None = field(default=None, repr=False)

    def best_arms(self, history: list[StoredArm], count: int) -> list[StoredArm]:
        """Completed arms, best first by the first objective."""
        done = [a for a in history if a.state == COMPLETE and a.values]
        sign = -1.0 if self.objectives[0].direction == "max" else 1.0
        return sorted(done, key=lambda a: sign * a.values[0])[:count]  # type: ignore[index]

    def count_illegal(self, generation: int, proposal: Any, problems: list[str]) -> None:
        self.illegal += 1
        if self.store is not None:
            self.store.add_illegal(generation, proposal, problems)

    def schema(self) -> dict[str, Any]:
        """The whole legal space, as ``evsys schema --all`` prints it."""
        if self._schema is None:
            from evsys.cli.schema import full_schema

            self._schema = full_schema()
        return self._schema

    def fingerprint(self, settings: EvolveSettings) -> str:
        """What must not change when the sweep is resumed."""
        payload = {
            "base": self.base,
            "space": [d.to_dict() for d in self.dimensions],
            "objectives": [o.model_dump() for o in self.objectives],
            "proposer": settings.proposer.model_dump(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# -- before anything runs ------------------------------------------------------------------------


def prepare(
    settings: EvolveSettings, arguments: list[str], config_name: str | None
) -> EvolutionContext:
    """The sweep's context, checked: fixed overrides, search space (pre-flighted at its ends),
    objectives, proposer settings. Raises one ConfigError with every problem."""
    from evsys.preflight import is_hydra_override, is_sweep_override
    from evsys.sweep.plan import preflight

    task = [a for a in arguments if not is_hydra_override(a)]
    base = [a for a in task if not is_sweep_override(a)]
    swept = [(a, f"override '{a}'") for a in task if is_sweep_override(a)]
    (base_arm,) = preflight([base], config_name=config_name)
    if base_arm.problems:
        raise ConfigError(base_arm.problems)
    assert base_arm.config is not None
    problems: list[Problem] = []
    lines = [(f"{k}={v}", f"hydra.sweeper.params.{k}") for k, v in settings.params.items()]
    dimensions = grammar_dimensions([*lines, *swept], base_arm.resolved, problems)
    dimensions += schema_dimensions(settings.space, base_arm.resolved, problems)
    keys = [d.key for d in dimensions]
    for key in sorted({k for k in keys if keys.count(k) > 1}):
        problems.append(Problem(path=key, message="declared twice in the search space"))
    if settings.proposer.kind == "optuna" and not dimensions and not problems:
        problems.append(
            Problem(
                path="hydra.sweeper.params",
                message="the optuna proposer needs a search space: hydra.sweeper.params "
                "(interval(…), choice(…)) or hydra.sweeper.space (field names)",
            )
        )
    objectives = list(settings.objectives) or _declared_objectives(base_arm.config)
    if not objectives:
        problems.append(
            Problem(
                path="metadata.success_metric",
                message="evolution optimises a metric and none is declared: set "
                "metadata.success_metric, or hydra.sweeper.objectives",
                expected="a key of run_result.json metrics, e.g. eval/exact_match",
            )
        )
    problems += _proposer_problems(settings)
    if problems:
        raise ConfigError(problems)
    check_space(base, dimensions, config_name)
    return EvolutionContext(
        config_name=config_name,
        base=base,
        dimensions=dimensions,
        objectives=objectives,
        population=settings.population,
        hypothesis=base_arm.config.metadata.hypothesis,
        base_arm=base_arm,
    )


def preflight_evolution(overrides: list[str] | tuple[str, ...], config_name: str | None) -> None:
    """``evsys plan``/``validate`` and ``python -m evsys --multirun``: the evolve sweep's settings,
    search space, objectives and proposer, checked before anything is written (ConfigError)."""
    from evsys.compose.compose import compose
    from evsys.evolve.settings import read_settings
    from evsys.preflight import _with_hydra, is_sweep_override

    fixed = [line for line in overrides if not is_sweep_override(line)]
    composition = compose(fixed, config_name)
    if composition.hydra is None:
        return  # the config itself is broken: its own check reports why
    sweeper = OmegaConf.select(_with_hydra(composition), "hydra.sweeper")
    raw = OmegaConf.to_container(sweeper, resolve=True) if sweeper is not None else {}
    assert isinstance(raw, dict)
    settings = read_settings({str(k): v for k, v in raw.items()})
    prepare(settings, list(overrides), config_name)


def _declared_objectives(config: Any) -> list[Objective]:
    metadata = config.metadata
    declared = metadata.objectives or ([metadata.success_metric] if metadata.success_metric else [])
    return [Objective(metric=m.name, direction=m.direction) for m in declared]


def _proposer_problems(settings: EvolveSettings) -> list[Problem]:
    from importlib.util import find_spec

    from pydantic import ValidationError

    needed = ["sqlalchemy", *(["optuna"] if settings.proposer.kind == "optuna" else [])]
    missing = [name for name in needed if find_spec(name) is None]
    if missing:
        return [
            Problem(
                path="hydra.sweeper.proposer.kind",
                message=f"the evolve sweeper needs {', '.join(missing)}: "
                "pip install 'evsys[evolve]'",
                value=settings.proposer.kind,
            )
        ]
    path = "hydra.sweeper.proposer.params"
    params = dict(settings.proposer.params)
    try:
        if settings.proposer.kind == "optuna":
            from evsys.evolve.proposers.optuna import OptunaParams

            OptunaParams(**params)
            return []
        from evsys.evolve.proposers.llm import LLMParams
        from evsys.registry import INFERENCE_CLIENTS

        client = LLMParams(**params).client
        if client.kind not in INFERENCE_CLIENTS:
            return INFERENCE_CLIENTS.unknown(client.kind, path=f"{path}.client.kind").problems
        config_class = INFERENCE_CLIENTS.config_class(client.kind)
        if config_class is not None:
            config_class(**client.params)
    except ValidationError as exc:
        return [
            Problem(
                path=".".join([path, *map(str, e["loc"])]), message=e["msg"], value=e.get("input")
            )
            for e in exc.errors()
        ]
    return []


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
    from evsys.evolve.dashboard import DashboardGenerations
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
    return finish_sweep(summary)


class ProposerGaveNothing(Exception):
    """A generation got no legal proposal after every round: the loop ends there."""


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
            except ProposerGaveNothing:
                print(
                    f"evsys: evolve stops: no new legal proposal for generation {generation} "
                    "(every proposal was illegal or already run: the space may be exhausted)",
                    file=sys.stderr,
                )
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
                proposals = []
            for proposal, arm in self._admit(generation, proposals, wanted):
                self.store.add_arm(arm)
                self.arms.append(arm)
                pending.append((arm, proposal))
        if not pending:
            raise ProposerGaveNothing(generation)  # every proposal illegal or already run
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
        )

    def _room(self, generation: int) -> int:
        here = sum(1 for a in self.arms if a.generation == generation)
        wanted = self.settings.population - here
        if self.settings.max_arms is not None:
            wanted = min(wanted, self.settings.max_arms - len(self.arms))
        return wanted

    def _admit(
        self, generation: int, proposals: list[Any], wanted: int
    ) -> list[tuple[Any, StoredArm]]:
        """The first ``wanted`` legal proposals, as stored arms named in the order admitted; the
        illegal ones are refused and counted, legal ones past ``wanted`` left unused."""
        from evsys.sweep.plan import preflight

        if not proposals:
            return []
        lines = [self._arm_overrides(p) for p in proposals]
        checked = preflight(lines, config_name=self.context.config_name)
        # searched config → the arm that has it (None: one admitted from this same batch)
        seen: dict[str | None, StoredArm | None] = {
            a.proposal.get("searched"): a for a in self.arms
        }
        admitted = []
        for proposal, overrides, arm in zip(proposals, lines, checked, strict=True):
            problems = [_problem_text(p) for p in arm.problems]
            problems += _line_problems(proposal.overrides)
            if not problems and len(admitted) >= wanted:
                continue  # an LLM gave more than asked: the generation is full
            searched = _searched_hash(arm) if not problems else None
            if not problems and searched in seen:
                earlier = seen[searched]
                which = earlier.name if earlier else "another proposal of this generation"
                reason = f"the same config as an earlier arm ({which})"
                self.proposer.refused(proposal, [reason], earlier=earlier)
                continue
            if problems:
                log.warning("evolve: refused %s: %s", proposal.overrides, problems)
                self.context.count_illegal(generation, proposal.overrides, problems)
                self.proposer.refused(proposal, problems)
                continue
            seen[searched] = None
            proposal.name = arm_name(generation, len(self.arms) + len(admitted))
            self.checked[proposal.name] = arm  # composed and validated: launched as it is
            admitted.append(
                (
                    proposal,
                    StoredArm(
                        number=len(self.arms) + len(admitted),
                        name=proposal.name,
                        generation=generation,
                        overrides=overrides,
                        params=proposal.params,
                        parents=proposal.parents,
                        proposal={
                            **proposal.data,
                            "config_hash": arm.config_hash,
                            "searched": searched,
                        },
                    ),
                )
            )
        return admitted

    def _arm_overrides(self, proposal: Any) -> list[str]:
        """The sweep's fixed overrides, the proposal's (winning over a fixed one of the same key)
        and the lineage: ``parent_experiment_id`` is the first parent's run id."""
        keys = {line.partition("=")[0].lstrip("+~") for line in proposal.overrides}
        base = [
            line for line in self.context.base if line.partition("=")[0].lstrip("+~") not in keys
        ]
        runs = {a.name: a.run_id for a in self.arms}
        parent = next((runs[p] for p in proposal.parents if runs.get(p)), None)
        lineage = [f"parent_experiment_id={json.dumps(parent)}"] if parent else []
        return [*base, *proposal.overrides, *lineage]

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
        runs = {a.name: a.run_id for a in self.arms}
        parent = next((runs[p] for p in arm.parents if runs.get(p)), None)
        return {
            "generation": arm.generation,
            "parent_arms": arm.parents,
            "parent_experiment_id": parent,
            "proposer": self.settings.proposer.kind,
        }

    # -- outputs ------------------------------------------------------------------------------

    def _write_plan(self, checked_by_name: dict[str, Any]) -> None:
        from evsys.files import write_json_atomically
        from evsys.preflight import EVOLVE_SWEEPER
        from evsys.run.record import redact
        from evsys.sweep.aggregate import SWEEP_PLAN

        entries = []
        for arm in self.arms:
            checked = checked_by_name.get(arm.name)
            entry = {
                "name": arm.name,
                "dir": arm.name,
                "overrides": arm.overrides,
                "config_hash": arm.proposal.get("config_hash"),
                "generation": arm.generation,
                "parent_arms": arm.parents,
            }
            if checked is not None and checked.config is not None:
                entry["group_id"] = checked.group_id
                entry["seed"] = checked.seed
                entry["config"] = redact(checked.config.model_dump(mode="json"))
            entries.append(entry)
        first = self.context.objectives[0]
        write_json_atomically(
            self.sweep_dir / SWEEP_PLAN,
            {
                "name": OmegaConf.select(self.config, "name") or self.sweep_dir.name,
                "created_at": datetime.now(UTC).isoformat(),
                "hypothesis": self.context.hypothesis,
                "success_metric": {"name": first.metric, "direction": first.direction},
                "launcher": OmegaConf.select(self.config, "hydra.launcher._target_"),
                "sweeper": EVOLVE_SWEEPER,
                "proposed": f"in generations by the {self.settings.proposer.kind} proposer",
                "arms": entries,
            },
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


def _searched_hash(arm: Any) -> str:
    """The arm's config without its lineage: the same config proposed from another parent is
    the same point of the search, not a new one."""
    from evsys.run.record import config_hash, redact

    config = arm.config.model_dump(mode="json")
    return config_hash(redact({k: v for k, v in config.items() if k != "parent_experiment_id"}))


def _problem_text(problem: Problem) -> str:
    expected = f" (expected {problem.expected})" if problem.expected else ""
    return f"{problem.path}: {problem.message}{expected}, got {problem.value!r}"


def arm_name(generation: int, number: int) -> str:
    return f"g{generation}_{number:03d}"


def _line_problems(overrides: list[str]) -> list[str]:
    """Lines a proposal may not hold: Hydra's own settings, sweep expressions."""
    from evsys.preflight import is_hydra_override, is_sweep_override

    problems = []
    for line in overrides:
        if is_hydra_override(line):
            problems.append(f"{line}: Hydra's own settings are not the proposer's to change")
        elif is_sweep_override(line):
            problems.append(f"{line}: one value per key, not a sweep expression")
    return problems


def load_tracker(spec: str | None, sweep_dir: Path) -> Any:
    """The generation tracker ``module:factory(sweep_dir=…)`` builds (the dashboard's), or None.

    Its optional methods, called with keywords: ``create_generation(sweep_dir, generation)``
    when a generation starts, ``update_generation(sweep_dir, generation, arms={name: state},
    best=[name], parents=[name])`` when it ended. A tracker that fails is logged, never the loop's end."""
    if not spec:
        return None
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute or "tracker")
        return factory(sweep_dir=str(sweep_dir))
    except Exception as exc:
        log.warning("evolve: no tracker (%s): %s", spec, exc)
        return None
