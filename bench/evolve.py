"""Evolution against grid and random search at equal arms, over a suite of mock landscapes.

    python bench/evolve.py [--seeds 20] [--generations 4] [--population 4] [--sweeps]

Each landscape (``backend.params.landscape``, see evsys.backends.mock.landscape) has a known
optimum; each search gets ``generations × population`` arms over lr ∈ [1e-5, 1e-2] (log) ×
LoRA rank ∈ [2, 32] (int, log), and lr_schedule ∈ {constant, linear, cosine} on the categorical
landscape:

- ``evolve``: the evolve sweeper's default proposer (space-filling first generation, then CMA-ES
  from its best arm);
- ``evolve-tpe``: the same start, then TPE;
- ``cmaes-centre``: random start-up, then CMA-ES from the centre of the box (the old CMA-ES);
- ``random``: Optuna's random sampler; ``grid``: a log-spaced grid of at most the same size
  (every choice × √(arms / choices) values per number).

Reported: the fraction of the optimum each reaches — the landscape's value (without noise) at
the arm the search judged best, ÷ its value at the optimum — mean and min over the seeds.

By default each proposer runs in process, exactly as the sweeper drives it (propose, confine,
repeats refused, observe), each arm scored with the ``q`` a mock run of it learns with (noise
included); that takes seconds. ``--sweeps`` runs real sweeps instead (``python -m evsys
--multirun``; evolve, random and grid; the score is eval/exact_match ÷ the optimum's, run with the
same seed): minutes per landscape.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

from evsys.backends.mock.landscape import SCHEDULES, Landscape  # noqa: E402
from evsys.evolve.space import CHOICE, FLOAT, INT, Dimension  # noqa: E402

LR, RANK, SCHEDULE = (
    f"algorithm.params.{k}" for k in ("learning_rate", "lora_rank", "lr_schedule")
)
LR_RANGE, RANK_RANGE = (1e-5, 1e-2), (2, 32)
SUITE: dict[str, dict[str, Any]] = {
    "centre": {"learning_rate": 3.16e-4, "lora_rank": 8},  # the box's centre on its log axes
    "off-centre": {"learning_rate": 2.5e-3, "lora_rank": 20},
    "corner": {"learning_rate": 2e-5, "lora_rank": 3},
    "two-optima": {  # a narrow global peak and a broad lower one at the other side of the box
        "learning_rate": 4e-3,
        "lora_rank": 4,
        "lr_width": 1.0,
        "rank_width": 1.0,
        "peaks": [{"learning_rate": 4e-5, "lora_rank": 20, "height": 0.85}],
    },
    "noisy": {"learning_rate": 5e-4, "lora_rank": 10, "noise": 0.1},
    "categorical": {
        "learning_rate": 2e-3,
        "lora_rank": 6,
        "lr_schedule": {"constant": 0.6, "linear": 0.8, "cosine": 1.0},
    },
    "narrow": {"learning_rate": 6e-4, "lora_rank": 24, "lr_width": 0.7, "rank_width": 0.7},
}
PROPOSERS: dict[str, dict[str, Any]] = {  # hydra.sweeper.proposer.params of each search
    "evolve": {},
    "evolve-tpe": {"sampler": "tpe"},
    "cmaes-centre": {"sampler": "cmaes", "startup": "random", "cmaes_start": "centre"},
    "random": {"sampler": "random"},
}


def dimensions(landscape: dict[str, Any]) -> list[Dimension]:
    space = [
        Dimension(LR, FLOAT, *LR_RANGE, log=True),
        Dimension(RANK, INT, *RANK_RANGE, log=True),
    ]
    if "lr_schedule" in landscape:
        space.append(Dimension(SCHEDULE, CHOICE, choices=SCHEDULES))
    return space


def grammar(dimension: Dimension) -> str:
    """A dimension in the sweeper's grammar, for a command line."""
    if dimension.kind == CHOICE:
        return f"choice({', '.join(map(str, dimension.choices))})"
    searched = f"interval({dimension.low}, {dimension.high})"
    searched = f"int({searched})" if dimension.kind == INT else searched
    return f"tag(log, {searched})" if dimension.log else searched


def point(values: dict[str, Any]) -> tuple[float, int, str]:
    return values[LR], values[RANK], values.get(SCHEDULE, "linear")


def evolve_in_process(
    landscape: Landscape, space: list[Dimension], params: dict[str, Any], seed: int, args: Any
) -> tuple[float, float]:
    """(the landscape's value at the arm judged best, the score it was judged by), the proposer
    driven as the evolve loop drives it."""
    from evsys.evolve.confine import confine
    from evsys.evolve.context import EvolutionContext
    from evsys.evolve.proposers import make_proposer
    from evsys.evolve.settings import EvolveSettings, Objective
    from evsys.evolve.store import COMPLETE, StoredArm

    settings = EvolveSettings.model_validate(
        {"proposer": {"params": params}, "seed": seed, "population": args.population}
    )
    context = EvolutionContext(
        config_name=None, base=[], dimensions=space, objectives=[Objective(metric="q")],
        population=args.population,
    )  # fmt: skip
    proposer = make_proposer(settings, context)
    arms: list[StoredArm] = []
    seen: dict[tuple, StoredArm] = {}
    for generation in range(args.generations):
        for _ in range(proposer.rounds):
            wanted = args.population - sum(a.generation == generation for a in arms)
            if wanted <= 0:
                break
            names = [f"g{generation}_{len(arms) + i:03d}" for i in range(wanted)]
            for proposal in proposer.propose(generation, names, list(arms)):
                values = confine(proposal.overrides, space).values
                if point(values) in seen:  # the loop's rule: a repeat gets the earlier result
                    proposer.refused(proposal, ["a repeat"], earlier=seen[point(values)])
                    continue
                score = landscape.learn_probability(*point(values), seed=seed)
                arm = StoredArm(
                    len(arms), proposal.name, generation, proposal.overrides, values,
                    proposal=dict(proposal.data), state=COMPLETE, values=[score],
                )  # fmt: skip
                seen[point(values)] = arm
                arms.append(arm)
                proposer.observe(arm, proposal)
    best = max(arms, key=lambda a: a.values[0])  # type: ignore[index]
    return landscape.value(*point(best.params)), best.values[0]  # type: ignore[index]


def grid_points(space: list[Dimension], budget: int) -> list[dict[str, Any]]:
    """Every choice × the same number of log-spaced values per number, at most ``budget``."""
    choices = [d for d in space if d.kind == CHOICE]
    numbers = [d for d in space if d.kind != CHOICE]
    per_choice = budget // math.prod(len(d.choices) for d in choices)
    side = max(2, int(per_choice ** (1 / len(numbers)) + 1e-9))
    axes: dict[str, list[Any]] = {d.key: list(d.choices) for d in choices}
    for d in numbers:
        assert d.low is not None and d.high is not None
        values = [d.low * (d.high / d.low) ** (i / (side - 1)) for i in range(side)]
        axes[d.key] = sorted({round(v) for v in values}) if d.kind == INT else values
    points: list[dict[str, Any]] = [{}]
    for key, values in axes.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def grid_in_process(landscape: Landscape, space: list[Dimension], seed: int, args: Any) -> tuple:
    scored = [
        (landscape.learn_probability(*point(p), seed=seed), p)
        for p in grid_points(space, args.generations * args.population)
    ]
    score, best = max(scored, key=lambda s: s[0])
    return landscape.value(*point(best)), score


def run_suite(args: Any) -> dict[str, dict[str, list[float]]]:
    """landscape → search → the fraction of the optimum reached, per seed."""
    if args.sweeps:
        from evolve_sweeps import sweep_fractions  # type: ignore[import-not-found]

        return sweep_fractions(SUITE, args)
    table: dict[str, dict[str, list[float]]] = {}
    for name, shape in SUITE.items():
        landscape, space = Landscape(**shape), dimensions(shape)
        top = landscape.value(**landscape.optimum())  # the known optimum's score
        table[name] = {m: [] for m in [*PROPOSERS, "grid"]}
        for seed in range(args.seeds):
            for method, params in PROPOSERS.items():
                truth, _ = evolve_in_process(landscape, space, params, seed, args)
                table[name][method].append(truth / top)
            table[name]["grid"].append(grid_in_process(landscape, space, seed, args)[0] / top)
    return table


def print_table(table: dict[str, dict[str, list[float]]], args: Any) -> None:
    methods = list(next(iter(table.values())))
    budget = args.generations * args.population
    print(
        f"fraction of the optimum reached with {budget} arms ({args.generations} generations of "
        f"{args.population}), mean (min) over {args.seeds} seeds"
    )
    print(f"{'landscape':12s}" + "".join(f"{m:>16s}" for m in methods) + "   evolve ≥ both?")
    for name, row in table.items():
        cells = "".join(f"{statistics.mean(v):9.3f} ({min(v):.2f})" for v in row.values())
        rival = max(statistics.mean(row["grid"]), statistics.mean(row["random"]))
        verdict = "yes" if statistics.mean(row["evolve"]) >= rival else "NO"
        print(f"{name:12s}{cells}   {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--sweeps", action="store_true", help="real sweeps (slow)")
    parser.add_argument("--only", nargs="*", help="these landscapes only")
    args = parser.parse_args()
    for name in set(SUITE) - set(args.only or SUITE):
        del SUITE[name]
    start = time.perf_counter()
    print_table(run_suite(args), args)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
