"""The Optuna proposer's default start: a space-filling first generation, then a model.

With a handful of arms per generation, random start-up trials clump and leave corners unseen, and
Optuna's CMA-ES starts at the centre of the box whatever it has seen. Here:

- :class:`StartUp` wraps a sampler: its first ``count`` trials come from a maximin Latin
  hypercube over the whole space (every axis cut into ``count`` strata, one point in each;
  of many such designs, the one whose closest two points lie farthest apart), each axis on its
  own scale (log intervals in log space, ints rounded, choices as equal strata), or from random
  search if asked; then it hands over to the wrapped sampler, which learns from those trials
  like any others.
- :class:`PopulationCmaEs` is Optuna's CMA-ES with one CMA generation per evolve generation
  (its population is the sweep's) and its start point chosen by a rule: ``best`` (the best
  completed arm so far, default), ``random`` (a random point of the box) or ``centre``, and a
  step size of :data:`CMA_SPREAD` of the narrowest axis (log axes in log units).

The design and the start point are functions of the seed and the trials alone, so a resumed
sweep (whose trials are replayed in order) starts as an uninterrupted one did.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
from optuna import distributions as d
from optuna.samplers import BaseSampler, CmaEsSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import TrialState

CANDIDATE_DESIGNS = 256  # Latin hypercubes drawn to pick the most spread-out one
PAIRS_CHECKED = 500_000  # fewer candidates for a large generation: each costs count² distances


def latin_hypercube(count: int, dims: int, rng: random.Random) -> list[list[float]]:
    """``count`` points in [0, 1)^dims, one per stratum of every axis, the closest pair as far
    apart as the best of :data:`CANDIDATE_DESIGNS` draws (fewer for hundreds of points)."""
    best: list[list[float]] = []
    best_gap = -1.0
    for _ in range(max(1, min(CANDIDATE_DESIGNS, PAIRS_CHECKED // (count * count + 1)))):
        columns = []
        for _ in range(dims):
            strata = list(range(count))
            rng.shuffle(strata)
            columns.append([(s + rng.random()) / count for s in strata])
        points = [list(p) for p in zip(*columns, strict=True)] if dims else [[]] * count
        gap = min(
            (math.dist(a, b) for i, a in enumerate(points) for b in points[i + 1 :]),
            default=0.0,
        )
        if gap > best_gap:
            best, best_gap = points, gap
    return best


def from_unit(distribution: d.BaseDistribution, u: float) -> Any:
    """The value at fraction ``u`` ∈ [0, 1) of a distribution's range, on its own scale."""
    if isinstance(distribution, d.CategoricalDistribution):
        choices = distribution.choices
        return choices[min(len(choices) - 1, int(u * len(choices)))]
    low, high = float(distribution.low), float(distribution.high)  # type: ignore[attr-defined]
    is_int = isinstance(distribution, (d.IntUniformDistribution, d.IntLogUniformDistribution))
    if is_int:  # each integer owns an equal share of the (log) range
        low, high = low - 0.5, high + 0.5
    if isinstance(distribution, (d.LogUniformDistribution, d.IntLogUniformDistribution)):
        low = max(low, 1e-12 if not is_int else 0.5)
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        value = low + u * (high - low)
    step = getattr(distribution, "step", None) or getattr(distribution, "q", None)
    if is_int:
        first, last = int(distribution.low), int(distribution.high)  # type: ignore[attr-defined]
        step = int(step or 1)
        return min(last, max(first, first + round((value - first) / step) * step))
    if step:
        first = float(distribution.low)  # type: ignore[attr-defined]
        value = first + round((value - first) / step) * step
    return min(float(distribution.high), max(float(distribution.low), value))  # type: ignore[attr-defined]


class StartUp(BaseSampler):
    """The first ``count`` trials from a maximin Latin hypercube (or random search), then
    ``then``."""

    def __init__(
        self,
        then: BaseSampler,
        space: dict[str, d.BaseDistribution],
        count: int,
        seed: int | None = None,
        space_filling: bool = True,
    ):
        self.then = then
        self.count = count
        self.keys = list(space)
        self.space = space
        self.design = latin_hypercube(count, len(space), random.Random(seed))
        self.random = None if space_filling else RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        if trial.number < self.count:
            return {}
        return self.then.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict:
        if trial.number < self.count:
            return {}
        return self.then.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Any, trial: Any, param_name: str, param_distribution: Any
    ) -> Any:
        if trial.number < self.count and self.random is not None:
            return self.random.sample_independent(study, trial, param_name, param_distribution)
        if trial.number < self.count and param_name in self.space:
            unit = self.design[trial.number][self.keys.index(param_name)]
            if isinstance(param_distribution, d.CategoricalDistribution):
                # By stratum, not by the point within it: every choice is tried when there are
                # at least as many trials as choices.
                choices = param_distribution.choices
                return choices[int(unit * self.count) * len(choices) // self.count]
            return from_unit(param_distribution, unit)
        return self.then.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self.then.reseed_rng()
        if self.random is not None:
            self.random.reseed_rng()

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.then.after_trial(study, trial, state, values)


CMA_SPREAD = 0.3  # CMA-ES's first step, of the narrowest axis: measured best of 0.1 … 0.5


class PopulationCmaEs(CmaEsSampler):
    """Optuna's CMA-ES, one CMA generation per ``population`` trials, starting at ``start``."""

    def __init__(self, population: int, start: str = "best", seed: int | None = None, **kw: Any):
        super().__init__(seed=seed, n_startup_trials=0, warn_independent_sampling=False, **kw)
        self.population = max(2, population)
        self.start = start
        self.seed = seed

    def _init_optimizer(self, trans: Any, direction: Any, population_size: Any = None,
                        randomize_start_point: bool = False) -> Any:  # fmt: skip
        # Optuna 2.10 asks for neither the population nor a start computed from the trials:
        # the hook it calls once, when the first CMA trial is sampled, gets both.
        if self.start == "best" and self._best_params is not None:
            self._x0 = self._best_params
        elif self.start == "random":  # drawn afresh from the seed: the same in a resumed sweep
            low, high = trans.bounds[:, 0], trans.bounds[:, 1]
            draw = np.random.RandomState(self.seed).rand(len(low))
            self._x0 = trans.untransform(low + (high - low) * draw)
        if self._sigma0 is None:
            self._sigma0 = CMA_SPREAD * float(min(trans.bounds[:, 1] - trans.bounds[:, 0]))
        return super()._init_optimizer(
            trans, direction, population_size or self.population, randomize_start_point
        )

    _best_params: dict[str, Any] | None = None

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict:
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if all(k in t.params for k in search_space)
        ]
        if done:
            sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
            best = max(done, key=lambda t: sign * t.value)
            self._best_params = {k: best.params[k] for k in search_space}
        return super().sample_relative(study, trial, search_space)
