"""``bench/evolve.py --sweeps``: the suite through real sweeps (``python -m evsys --multirun``).

Each search is a sweep of the mock backend on the landscape; its score is the best
eval/exact_match it found ÷ the eval/exact_match of a run at the landscape's optimum with the same
seed (scored on the training rows after 10 steps, where the score follows ``q`` closely).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from evolve import LR, RANK, SCHEDULE, dimensions, grammar, grid_points  # type: ignore[import-not-found]

from evsys.backends.mock.landscape import Landscape
from evsys.evolve.space import format_value

EM = "eval/exact_match"


def hydra_value(value: Any) -> str:
    """A landscape's settings as a Hydra override value."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(hydra_value(v) for v in value) + "]"
    return str(value)


def evsys(*args: str, cwd: Path) -> None:
    env = {**os.environ, "EVSYS_CONFIG_NAME": "base", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "evsys", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"evsys {' '.join(args)} failed:\n{done.stderr[-3000:]}")


def best_score(sweep: Path) -> float:
    scores = [json.loads(p.read_text())["metrics"].get(EM) for p in sweep.glob("*/run_result.json")]
    return max(s for s in scores if s is not None)


def sweep_fractions(suite: dict[str, dict[str, Any]], args: Any) -> dict[str, dict[str, list]]:
    cwd = Path(tempfile.mkdtemp())
    table: dict[str, dict[str, list[float]]] = {}
    for name, shape in suite.items():
        task = [
            "data.eval_path=null", f"+backend.params.landscape={hydra_value(shape)}",
            f"+metadata.success_metric={EM}", "algorithm.params.max_steps=10",
        ]  # fmt: skip
        space = dimensions(shape)
        best = Landscape(**shape).optimum()
        at_best = [f"{LR}={best['learning_rate']}", f"{RANK}={best['lora_rank']}"]
        at_best += [f"{SCHEDULE}={best['lr_schedule']}"] if "lr_schedule" in best else []
        table[name] = {"evolve": [], "random": [], "grid": []}
        for seed in range(args.seeds):
            evsys(*task, f"seed={seed}", *at_best, f"hydra.run.dir={name}_opt_{seed}", cwd=cwd)
            top = json.loads((cwd / f"{name}_opt_{seed}" / "run_result.json").read_text())
            searched = [f"{d.key}={grammar(d)}" for d in space]
            for method, sampler in (("evolve", []), ("random", ["sampler=random"])):
                out = f"{name}_{method}_{seed}"
                evsys(
                    "--multirun", "hydra/sweeper=evolve", *task, f"seed={seed}", *searched,
                    *(f"hydra.sweeper.proposer.params.{s}" for s in sampler),
                    f"hydra.sweeper.generations={args.generations}",
                    f"hydra.sweeper.population={args.population}",
                    f"hydra.sweeper.seed={seed}", f"hydra.sweep.dir={out}", cwd=cwd,
                )  # fmt: skip
                table[name][method].append(best_score(cwd / out) / top["metrics"][EM])
            points = grid_points(space, args.generations * args.population)
            axes = {k: sorted({p[k] for p in points}, key=str) for k in points[0]}
            out = f"{name}_grid_{seed}"
            lists = [f"{k}={','.join(format_value(v) for v in vs)}" for k, vs in axes.items()]
            evsys("--multirun", *task, f"seed={seed}", *lists, f"hydra.sweep.dir={out}", cwd=cwd)
            table[name]["grid"].append(best_score(cwd / out) / top["metrics"][EM])
        print(f"{name}: done", flush=True)
    return table
