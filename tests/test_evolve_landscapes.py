"""The evolve sweeper's default proposer (a space-filling first generation, then CMA-ES from its best
arm) and the mock landscapes it is measured on (evsys.backends.mock.landscape, bench/evolve.py)."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import sys
from pathlib import Path

import pytest
from conftest import run_evsys
from hypothesis import given, settings
from hypothesis import strategies as st

from evsys.backends.mock.landscape import SCHEDULES, Landscape
from evsys.evolve.space import CHOICE, FLOAT, INT, Dimension

pytest.importorskip("optuna", reason="pip install 'evsys[evolve]'")
pytest.importorskip("cmaes", reason="pip install 'evsys[evolve]'")

LR, RANK, SCHEDULE = (
    f"algorithm.params.{k}" for k in ("learning_rate", "lora_rank", "lr_schedule")
)
SPACE = [
    Dimension(LR, FLOAT, 1e-5, 1e-2, log=True),
    Dimension(RANK, INT, 2, 32, log=True),
    Dimension(SCHEDULE, CHOICE, choices=SCHEDULES),
]


def proposer(population: int, seed: int, **params: str):  # type: ignore[no-untyped-def]
    from evsys.evolve.context import EvolutionContext
    from evsys.evolve.proposers import make_proposer
    from evsys.evolve.settings import EvolveSettings, Objective

    settings = EvolveSettings.model_validate(
        {"proposer": {"params": params}, "seed": seed, "population": population}
    )
    context = EvolutionContext(None, [], SPACE, [Objective(metric="q")], population)
    return make_proposer(settings, context)


def unit(dimension: Dimension, value: object) -> float:
    """Where a value lies in its dimension, 0 … 1 (log axes in log units; a choice's stratum)."""
    if dimension.kind == CHOICE:
        return (dimension.choices.index(value) + 0.5) / len(dimension.choices)
    low, high = float(dimension.low), float(dimension.high)  # type: ignore[arg-type]
    if dimension.kind == INT:  # each integer owns an equal share of the range
        low, high = low - 0.5, high + 0.5
    return (math.log(float(value) / low)) / math.log(high / low)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(population=st.integers(2, 9), seed=st.integers(0, 2**31 - 1))
def test_the_first_generation_fills_the_box_one_point_per_stratum(
    population: int, seed: int
) -> None:
    first = proposer(population, seed).propose(0, [f"g0_{i:03d}" for i in range(population)], [])
    learning_rate, rank = SPACE[:2]
    strata = sorted(int(unit(learning_rate, p.params[LR]) * population) for p in first)
    assert strata == list(range(population)), strata
    # A rank is rounded to its integer, which may cross into the next stratum (by at most the
    # largest share of the axis one integer owns: 2's, log(2.5/1.5)/log(32.5/1.5) = 0.17).
    ranks = sorted(unit(rank, p.params[RANK]) for p in first)
    assert ranks[0] <= 1 / population + 0.17 and ranks[-1] >= 1 - 1 / population - 0.17, ranks
    choices = {p.params[SCHEDULE] for p in first}
    assert len(choices) == min(population, len(SCHEDULES))  # every choice seen when it can be
    # Not the centre of the box: the point nearest to it is away from it on some axis.
    assert min(max(abs(unit(d, p.params[d.key]) - 0.5) for d in SPACE[:2]) for p in first) > 0


def told(proposer_, generation: int, landscape: Landscape, arms: list) -> list:  # type: ignore[no-untyped-def]
    from evsys.evolve.store import COMPLETE, StoredArm

    names = [f"g{generation}_{len(arms) + i:03d}" for i in range(proposer_.context.population)]
    proposals = proposer_.propose(generation, names, list(arms))
    for proposal in proposals:
        values = [landscape.value(*(proposal.params[k] for k in (LR, RANK, SCHEDULE)))]
        arm = StoredArm(
            len(arms), proposal.name, generation, proposal.overrides, dict(proposal.params),
            proposal=dict(proposal.data), state=COMPLETE, values=values,
        )  # fmt: skip
        arms.append(arm)
        proposer_.observe(arm, proposal)
    return proposals


@pytest.mark.parametrize(("start", "near"), [("best", "best"), ("centre", "centre")])
def test_cmaes_starts_at_the_best_first_arm_unless_told_the_centre(start: str, near: str) -> None:
    landscape = Landscape(learning_rate=2e-5, lora_rank=3)  # near a corner
    numbers = SPACE[:2]
    for seed in range(4):
        made = proposer(6, seed, cmaes_start=start) if start != "best" else proposer(6, seed)
        arms: list = []
        told(made, 0, landscape, arms)
        best = max(arms, key=lambda a: a.values[0])
        target = [unit(d, best.params[d.key]) if near == "best" else 0.5 for d in numbers]
        other = [0.5] * 2 if near == "best" else [unit(d, best.params[d.key]) for d in numbers]
        second = told(made, 1, landscape, arms)
        centroid = [statistics.mean(unit(d, p.params[d.key]) for p in second) for d in numbers]
        assert math.dist(centroid, target) < math.dist(centroid, other), (seed, centroid)


def test_an_unknown_cmaes_start_is_refused_naming_the_setting(workdir: Path) -> None:
    done = run_evsys(
        "--multirun", "hydra/sweeper=evolve", "+backend.params.landscape={}",
        "+metadata.success_metric=eval/exact_match", f"{LR}=tag(log, interval(1e-5, 1e-2))",
        "hydra.sweeper.proposer.params.cmaes_start=edge", cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "hydra.sweeper.proposer.params.cmaes_start: Input should be 'best'" in done.stderr
    assert not (workdir / "multirun").exists() and not list(workdir.glob("*/g0_*"))


def test_a_categorical_axis_is_searched_end_to_end(workdir: Path) -> None:
    shape = "{learning_rate: 2e-3, lora_rank: 6, lr_schedule: {constant: 0.5, linear: 0.75}}"
    done = run_evsys(
        "--multirun", "hydra/sweeper=evolve", f"+backend.params.landscape={shape}",
        "+metadata.success_metric=eval/exact_match", "algorithm.params.max_steps=4",
        "data.eval_path=null", f"{LR}=tag(log, interval(1e-5, 1e-2))",
        f"{RANK}=tag(log, int(interval(2, 32)))", f"{SCHEDULE}=choice(constant, linear, cosine)",
        "hydra.sweeper.generations=2", "hydra.sweeper.population=3", "hydra.sweeper.seed=1",
        "hydra.sweep.dir=evo", cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    landscape = Landscape(
        learning_rate=2e-3, lora_rank=6, lr_schedule={"constant": 0.5, "linear": 0.75}
    )
    arms = [json.loads(p.read_text()) for p in sorted((workdir / "evo").glob("g*/run_result.json"))]
    assert len(arms) == 6
    first = {a["config"]["algorithm"]["params"]["lr_schedule"] for a in arms[:3]}
    assert first == set(SCHEDULES)  # the space-filling first generation tries every schedule
    for arm in arms:  # and each run's score is the landscape's at its schedule
        params = arm["config"]["algorithm"]["params"]
        expected = landscape.value(
            params["learning_rate"], params["lora_rank"], params["lr_schedule"]
        )
        assert arm["metrics"]["train/learn_probability"] == pytest.approx(expected)


def bench():  # type: ignore[no-untyped-def]
    path = Path(__file__).parents[1] / "bench" / "evolve.py"
    spec = importlib.util.spec_from_file_location("bench_evolve", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_evolve", module)
    spec.loader.exec_module(module)
    return module


def test_the_default_proposer_beats_random_search_off_centre() -> None:
    """At 16 arms over 8 fixed seeds, on the bench's off-centre landscape."""
    from argparse import Namespace

    module = bench()
    shape = module.SUITE["off-centre"]
    landscape, space = Landscape(**shape), module.dimensions(shape)
    args = Namespace(generations=4, population=4)
    reached = {
        method: statistics.mean(
            module.evolve_in_process(landscape, space, module.PROPOSERS[method], seed, args)[0]
            for seed in range(8)
        )
        for method in ("evolve", "random")
    }
    assert reached["evolve"] > reached["random"] + 0.03, reached


@settings(max_examples=50, deadline=None)
@given(
    lr=st.floats(1e-6, 1e-1),
    rank=st.integers(1, 128),
    schedule=st.sampled_from(SCHEDULES),
    noise=st.floats(0, 1),
    seed=st.integers(0, 1000),
)
def test_a_landscape_peaks_at_its_optimum_and_its_noise_stays_in_bounds(
    lr: float, rank: int, schedule: str, noise: float, seed: int
) -> None:
    landscape = Landscape(
        learning_rate=2e-3,
        lora_rank=6,
        peaks=[{"learning_rate": 4e-5, "lora_rank": 20, "height": 0.85}],
        lr_schedule={"constant": 0.6, "linear": 0.8},
        noise=noise,
    )
    best = landscape.value(**landscape.optimum())
    assert best == 1.0 and landscape.optimum()["lr_schedule"] == "cosine"
    assert 0 <= landscape.value(lr, rank, schedule) <= best
    seen = landscape.learn_probability(lr, rank, schedule, seed=seed)
    assert 0 <= seen <= 1 and seen == landscape.learn_probability(lr, rank, schedule, seed=seed)
    if noise == 0:
        assert seen == landscape.value(lr, rank, schedule)
    # The lower peak is a local optimum: its top is its height.
    assert landscape.value(4e-5, 20, "cosine") == pytest.approx(0.85, abs=1e-3)


@given(schedule=st.text(min_size=1, max_size=12).filter(lambda s: s not in SCHEDULES))
@settings(max_examples=20, deadline=None)
def test_a_factor_for_an_unknown_schedule_is_refused(schedule: str) -> None:
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        Landscape(lr_schedule={schedule: 0.5})


def test_a_random_cmaes_start_is_drawn_from_the_seed() -> None:
    """The same seed, the same start (a resumed sweep starts where the first session did); not
    the centre's proposals."""
    landscape = Landscape(learning_rate=2e-5, lora_rank=3)
    second = {}
    for name, start, seed in (("a", "random", 5), ("b", "random", 5), ("centre", "centre", 5)):
        made, arms = proposer(4, seed, cmaes_start=start), []
        told(made, 0, landscape, arms)
        second[name] = [p.params for p in told(made, 1, landscape, arms)]
    assert second["a"] == second["b"] and second["a"] != second["centre"]
