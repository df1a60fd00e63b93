"""Evolution against other searches at the same arm budget, on a landscape with a known optimum.

    python bench/evolve.py [--seeds 5] [--generations 4] [--population 4]

The mock backend's SFT score is a known smooth function of the learning rate and LoRA rank
(``backend.params.landscape``: peak at lr 3e-4, rank 16; see evsys.backends.mock.backend). Each
search gets ``generations × population`` arms over lr ∈ [1e-5, 1e-2] (log) × rank ∈ [2, 32]:

- ``evolve``: ``hydra/sweeper=evolve``, the Optuna proposer (TPE), generation by generation;
- ``evolve-cmaes``: the same with Optuna's CMA-ES sampler;
- ``optuna``: the unmodified hydra-optuna-sweeper (TPE), ``population`` trials at a time;
- ``random``: ``hydra/sweeper=evolve`` with Optuna's random sampler;
- ``grid``: evsys's sweeper over a log-spaced grid of the same size.

Reported: the fraction of the optimum each reaches (best eval/exact_match found ÷ the score of
the optimum itself, run with the same seed), mean and min over the seeds; then the evolve loop's
own cost per generation — its wall time against a plain evsys sweep of exactly the arms it ran.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EM, Q = "eval/exact_match", "train/learn_probability"
LR, RANK = "algorithm.params.learning_rate", "algorithm.params.lora_rank"
OPTIMUM = {LR: 3e-4, RANK: 16}
LR_RANGE, RANK_RANGE = (1e-5, 1e-2), (2, 32)
# Scored on the training rows (data.eval_path=null) after 10 steps: the score follows the
# landscape closely instead of saturating on held-out rows.
TASK = [
    "data.eval_path=null",
    "+backend.params.landscape={}",
    f"+metadata.success_metric={EM}",
    "algorithm.params.max_steps=10",
]


def evsys(*args: str, cwd: Path) -> float:
    """Run ``python -m evsys ARGS`` in ``cwd``; returns its wall time."""
    env = {**os.environ, "EVSYS_CONFIG_NAME": "base", "PYTHONPATH": str(Path(__file__).parents[1])}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "evsys", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"evsys {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def best_found(sweep: Path) -> tuple[float, float]:
    """The best eval/exact_match a search found, and the landscape's true value at that arm
    (``train/learn_probability``, 1 at the optimum; the first of tied arms)."""
    metrics = [
        json.loads(p.read_text())["metrics"] for p in sorted(sweep.glob("*/run_result.json"))
    ]
    best = max((m for m in metrics if m.get(EM) is not None), key=lambda m: m[EM])
    return best[EM], best[Q]


def optimum_score(seed: int, cwd: Path) -> float:
    evsys(*TASK, f"seed={seed}", f"{LR}={OPTIMUM[LR]}", f"{RANK}={OPTIMUM[RANK]}",
          f"hydra.run.dir=optimum_{seed}", cwd=cwd)  # fmt: skip
    return json.loads((cwd / f"optimum_{seed}" / "run_result.json").read_text())["metrics"][EM]


def run_evolve(seed: int, sampler: str, args: argparse.Namespace, cwd: Path) -> tuple[Path, float]:
    sweep = cwd / f"{sampler}_{seed}"
    wall = evsys(
        "--multirun", "hydra/sweeper=evolve", *TASK, f"seed={seed}",
        f"{LR}=tag(log, interval({LR_RANGE[0]}, {LR_RANGE[1]}))",
        f"{RANK}=interval({RANK_RANGE[0]}, {RANK_RANGE[1]})",  # an int field: ints sampled
        f"hydra.sweeper.proposer.params.sampler={sampler}",
        f"hydra.sweeper.generations={args.generations}",
        f"hydra.sweeper.population={args.population}",
        f"hydra.sweeper.seed={seed}", f"hydra.sweep.dir={sweep.name}", cwd=cwd,
    )  # fmt: skip
    return sweep, wall


def run_optuna(seed: int, args: argparse.Namespace, cwd: Path) -> Path:
    sweep = cwd / f"optuna_{seed}"
    evsys(
        "--multirun", "hydra/sweeper=optuna", "hydra/sweeper/sampler=tpe", *TASK, f"seed={seed}",
        f"hydra.sweeper.sampler.seed={seed}",
        f"hydra.sweeper.sampler.n_startup_trials={args.population}",
        f"hydra.sweeper.n_trials={args.generations * args.population}",
        f"hydra.sweeper.n_jobs={args.population}", "hydra.sweeper.direction=maximize",
        f"{LR}=tag(log, interval({LR_RANGE[0]}, {LR_RANGE[1]}))",
        f"{RANK}=int(interval({RANK_RANGE[0]}, {RANK_RANGE[1]}))",
        f"hydra.sweep.dir={sweep.name}", cwd=cwd,
    )  # fmt: skip
    return sweep


def run_grid(seed: int, args: argparse.Namespace, cwd: Path) -> Path:
    """A grid of about the same size: √budget values per axis, log-spaced."""
    side = max(2, round(math.sqrt(args.generations * args.population)))
    lrs = [LR_RANGE[0] * (LR_RANGE[1] / LR_RANGE[0]) ** (i / (side - 1)) for i in range(side)]
    ranks = sorted({round(RANK_RANGE[0] * (RANK_RANGE[1] / RANK_RANGE[0]) ** (i / (side - 1)))
                    for i in range(side)})  # fmt: skip
    sweep = cwd / f"grid_{seed}"
    evsys(
        "--multirun", *TASK, f"seed={seed}", f"{LR}={','.join(f'{v:.3g}' for v in lrs)}",
        f"{RANK}={','.join(map(str, ranks))}", f"hydra.sweep.dir={sweep.name}", cwd=cwd,
    )  # fmt: skip
    return sweep


def plain_sweep_of(evolved: Path, cwd: Path) -> Path:
    """evsys's own sweeper over exactly the arms the evolve sweep ran."""
    arms = json.loads((evolved / "lineage.json").read_text())["arms"]
    lrs, ranks = [], []
    for arm in arms:
        values = dict(line.split("=", 1) for line in arm["overrides"])
        lrs.append(values[LR])
        ranks.append(values[RANK])
    paired = f"+hydra.sweeper.paired=[{{{LR}: '{','.join(lrs)}', {RANK}: '{','.join(ranks)}'}}]"
    seed = next(line for line in arms[0]["overrides"] if line.startswith("seed="))
    plain = cwd / f"plain_{evolved.name}"
    evsys("--multirun", *TASK, seed, paired, f"hydra.sweep.dir={plain.name}", cwd=cwd)
    return plain


def arm_times(sweep: Path) -> list[tuple[str, float, float]]:
    """(arm, start, end) of every arm, in the order they ran."""
    times = []
    for path in sweep.glob("*/run_result.json"):
        record = json.loads(path.read_text())
        times.append(
            (path.parent.name, _seconds(record["started_at"]), _seconds(record["finished_at"]))
        )
    return sorted(times, key=lambda t: t[1])


def loop_overhead(evolved: Path, plain: Path) -> float:
    """Seconds the evolve loop spends between two generations (tell, propose, pre-flight,
    record, lineage) beyond what a plain sweep spends between two consecutive arms (Hydra's
    own set-up of the next job, which both pay)."""

    def gaps(times: list[tuple[str, float, float]]) -> list[float]:
        return [b[1] - a[2] for a, b in zip(times, times[1:], strict=False)]

    evolved_times = arm_times(evolved)
    generation = {name: int(name[1:].split("_")[0]) for name, _, _ in evolved_times}
    between = [
        gap
        for (a, _, _), (b, _, _), gap in zip(
            evolved_times, evolved_times[1:], gaps(evolved_times), strict=False
        )
        if generation[a] != generation[b]
    ]
    return statistics.mean(between) - statistics.mean(gaps(arm_times(plain)))


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--population", type=int, default=4)
    args = parser.parse_args()
    cwd = Path(tempfile.mkdtemp())
    budget = args.generations * args.population
    methods = ("evolve", "evolve-cmaes", "optuna", "random", "grid")
    fractions: dict[str, list[float]] = {m: [] for m in methods}  # measured score ÷ optimum's
    truths: dict[str, list[float]] = {m: [] for m in methods}  # the landscape at the best arm
    overheads: list[float] = []
    walls: list[tuple[float, float]] = []
    for seed in range(args.seeds):
        optimum = optimum_score(seed, cwd)
        evolved, wall = run_evolve(seed, "tpe", args, cwd)
        found = {
            "evolve": best_found(evolved),
            "evolve-cmaes": best_found(run_evolve(seed, "cmaes", args, cwd)[0]),
            "random": best_found(run_evolve(seed, "random", args, cwd)[0]),
            "optuna": best_found(run_optuna(seed, args, cwd)),
            "grid": best_found(run_grid(seed, args, cwd)),
        }
        for method, (value, truth) in found.items():
            fractions[method].append(value / optimum)
            truths[method].append(truth)
        plain = plain_sweep_of(evolved, cwd)
        overheads.append(loop_overhead(evolved, plain))
        walls.append((wall, sum(end - start for _, start, end in arm_times(evolved))))
        shown = "  ".join(f"{m} {v:.3f} (q {t:.2f})" for m, (v, t) in found.items())
        print(f"seed {seed}: optimum {optimum:.3f}  {shown}")
    print(f"\nfraction of the optimum reached with {budget} arms, over {args.seeds} seeds")
    print("  (score: best eval/exact_match ÷ the optimum's; q: the landscape at that arm, max 1)")
    for method in methods:
        score, truth = fractions[method], truths[method]
        print(
            f"  {method:12s} score mean {statistics.mean(score):.3f} min {min(score):.3f}   "
            f"q mean {statistics.mean(truth):.3f} min {min(truth):.3f}"
        )
    print(
        f"evolve loop overhead per generation of {args.population} arms, against a plain sweep of "
        f"the same arms: {statistics.mean(overheads):.2f} s (mean over {args.seeds} seeds; "
        f"whole evolve sweep {statistics.mean(w for w, _ in walls):.1f} s, of which arms "
        f"{statistics.mean(a for _, a in walls):.1f} s)"
    )


if __name__ == "__main__":
    main()
