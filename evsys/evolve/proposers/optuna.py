"""The Optuna proposer: ask/tell with CMA-ES, TPE, NSGA-II (several objectives) or random search.

The default for one objective: a space-filling first generation (a maximin Latin hypercube), then
CMA-ES started at the best arm of it, one CMA generation per evolve generation
(:mod:`evsys.evolve.proposers.sampling`); TPE starts from the same design. It won over TPE, random
search, a grid and a centre-started CMA-ES on the mock landscapes of ``bench/evolve.py``.

The study lives in memory and is rebuilt at start from the arms in evsys's store
(:mod:`evsys.evolve.store`) with ``optuna.trial.create_trial`` + ``study.add_trial``, each with its
distributions and the sampler's system attributes (CMA-ES's state, NSGA-II's generation), so a
resumed sweep proposes from everything the earlier sessions learned. Optuna's own RDB storage is
not used: optuna 2.10 (which hydra-optuna-sweeper pins) is broken with SQLAlchemy 2.

A failed arm is told as ``TrialState.FAIL`` — Optuna's own "bad result" — and the loop goes on.
The parents recorded for an arm are the ones NSGA-II crossed over, else the nearest earlier arm
in the normalised space (:func:`evsys.evolve.ancestry.nearest_arm`), or none in the first
generation.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evsys.evolve.proposal import Proposal
from evsys.evolve.space import CHOICE, FLOAT, Dimension
from evsys.evolve.store import COMPLETE, StoredArm

_NSGA2_PARENTS = "nsga2:parents"


class OptunaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sampler: Literal["tpe", "cmaes", "nsga2", "random"] | None = Field(
        None, description="None: cmaes for one objective, nsga2 for several."
    )
    n_startup_trials: int | None = Field(
        None, ge=0, description="TPE/CMA-ES: start-up trials first. None: one generation's worth."
    )
    startup: Literal["space_filling", "random"] | None = Field(
        None,
        description="TPE/CMA-ES's start-up trials: a maximin Latin hypercube (None) or random.",
    )
    cmaes_start: Literal["best", "random", "centre"] | None = Field(
        None,
        description="Where CMA-ES starts: the best start-up arm (None), a random point or the "
        "centre of the box.",
    )


class OptunaProposer:
    def __init__(self, params: dict[str, Any], context: Any, seed: int | None = None):
        import optuna

        self.cfg = OptunaParams(**params)
        self.context = context
        self.dimensions: dict[str, Dimension] = {d.key: d for d in context.dimensions}
        self.distributions = {key: _distribution(d) for key, d in self.dimensions.items()}
        objectives = context.objectives
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        directions = ["maximize" if o.direction == "max" else "minimize" for o in objectives]
        with _quiet():
            self.study = optuna.create_study(
                directions=directions, sampler=self._sampler(len(directions), seed)
            )
        # trial id → its arm's name, or its live proposal (named when the loop admits it):
        # NSGA-II names parents by trial id.
        self.trial_arms: dict[int, Any] = {}

    def _sampler(self, n_objectives: int, seed: int | None) -> Any:
        import optuna

        from evsys.evolve.proposers.sampling import PopulationCmaEs, StartUp

        kind = self.cfg.sampler or ("nsga2" if n_objectives > 1 else "cmaes")
        startup = self.cfg.n_startup_trials
        if startup is None:
            startup = self.context.population
        with _quiet():
            if kind in ("tpe", "cmaes"):
                # TPE also samples what CMA-ES cannot: choices, and a space of one number.
                model = optuna.samplers.TPESampler(seed=seed, n_startup_trials=0)
                if kind == "cmaes":
                    model = PopulationCmaEs(
                        self.context.population,
                        start=self.cfg.cmaes_start or "best",
                        seed=seed,
                        independent_sampler=model,
                    )
                filling = (self.cfg.startup or "space_filling") == "space_filling"
                return StartUp(model, self.distributions, startup, seed, space_filling=filling)
            if kind == "nsga2":
                return optuna.samplers.NSGAIISampler(
                    seed=seed, population_size=max(2, self.context.population)
                )
            return optuna.samplers.RandomSampler(seed=seed)

    # -- the protocol -------------------------------------------------------------------------

    def replay(self, arms: list[StoredArm]) -> None:
        for arm in arms:
            if arm.state != "proposed":
                self._add_finished(arm)

    def propose(
        self, generation: int, names: list[str], history: list[StoredArm]
    ) -> list[Proposal]:
        from evsys.evolve.ancestry import base_point, nearest_arm

        base = base_point(self.context)
        proposals = []
        for name in names:
            with _quiet():
                trial = self.study.ask(self.distributions)
            params = dict(trial.params)
            parent_ids = trial.system_attrs.get(_NSGA2_PARENTS) or []
            parents = [self._arm_of(i) for i in parent_ids if i in self.trial_arms]
            proposal = Proposal(
                name=name,
                overrides=[self.dimensions[key].override(v) for key, v in params.items()],
                params=params,
                parents=parents or nearest_arm(params, history, self.context.dimensions, base),
                data={"system_attrs": _plain(trial.system_attrs)},
                handle=trial,
            )
            self.trial_arms[trial._trial_id] = proposal
            proposals.append(proposal)
        return proposals

    def _arm_of(self, trial_id: int) -> str:
        arm = self.trial_arms[trial_id]
        return arm if isinstance(arm, str) else arm.name

    def observe(self, arm: StoredArm, proposal: Proposal | None) -> None:
        from optuna.trial import TrialState

        if proposal is None or proposal.handle is None:
            self._add_finished(arm)
            return
        with _quiet():
            if arm.state == COMPLETE and arm.values is not None:
                self.study.tell(proposal.handle, _values(arm.values))
            else:
                self.study.tell(proposal.handle, state=TrialState.FAIL)

    rounds = 3  # asks per generation, when a proposal repeats an earlier arm

    def refused(
        self, proposal: Proposal, problems: list[str], earlier: StoredArm | None = None
    ) -> None:
        """An illegal proposal fails its trial; one that repeats an earlier arm gets that arm's
        result, so the sampler learns the point is known."""
        from optuna.trial import TrialState

        if proposal.handle is None:
            return
        with _quiet():
            if earlier is not None and earlier.state == COMPLETE and earlier.values is not None:
                self.study.tell(proposal.handle, _values(earlier.values))
            else:
                self.study.tell(proposal.handle, state=TrialState.FAIL)

    # -- replay -------------------------------------------------------------------------------

    def _add_finished(self, arm: StoredArm) -> None:
        import optuna
        from optuna.trial import TrialState

        params = {k: v for k, v in arm.params.items() if k in self.distributions}
        if len(params) != len(self.distributions):
            return  # proposed over another space: nothing the sampler can learn from
        attrs = dict(arm.proposal.get("system_attrs") or {})
        names = {self._arm_of(i): i for i in self.trial_arms}
        if _NSGA2_PARENTS in attrs:  # ids of this session's trials, by the parents' names
            attrs[_NSGA2_PARENTS] = [names[p] for p in arm.parents if p in names]
        done = arm.state == COMPLETE and arm.values is not None
        values = list(arm.values or [])
        with _quiet():
            trial = optuna.trial.create_trial(
                params={k: _from_store(self.dimensions[k], v) for k, v in params.items()},
                distributions={k: self.distributions[k] for k in params},
                values=values if done else None,
                state=TrialState.COMPLETE if done else TrialState.FAIL,
                system_attrs=attrs,
            )
            self.study.add_trial(trial)
        self.trial_arms[self.study._storage.get_all_trials(self.study._study_id)[-1]._trial_id] = (
            arm.name
        )


def _distribution(dimension: Dimension) -> Any:
    from optuna import distributions as d

    if dimension.kind == CHOICE:
        return d.CategoricalDistribution(list(dimension.choices))
    low, high = dimension.low, dimension.high
    assert low is not None and high is not None
    if dimension.kind == FLOAT:
        if dimension.log:
            return d.LogUniformDistribution(low, high)
        if dimension.step:
            return d.DiscreteUniformDistribution(low, high, dimension.step)
        return d.UniformDistribution(low, high)
    if dimension.log:
        return d.IntLogUniformDistribution(int(low), int(high))
    return d.IntUniformDistribution(int(low), int(high), step=int(dimension.step or 1))


def _from_store(dimension: Dimension, value: Any) -> Any:
    if dimension.kind == FLOAT:
        return float(value)
    if dimension.kind != CHOICE:
        return int(value)
    return value


def _values(values: list[float]) -> Any:
    return values[0] if len(values) == 1 else list(values)


def _plain(attrs: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(attrs, default=str))


class _quiet(warnings.catch_warnings):
    """Optuna 2.10 marks ask/tell, create_trial and add_trial experimental, and warns that an
    int log distribution's step is deprecated when its samplers copy one: both known here."""

    def __enter__(self) -> Any:
        result = super().__enter__()
        import optuna

        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"optuna\.")
        return result
