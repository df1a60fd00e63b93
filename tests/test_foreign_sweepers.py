"""Sweeps driven by another sweeper: the real hydra-optuna-sweeper and Hydra's basic sweeper.

The arms return their objective, so Optuna's study sees real values; evsys still checks the arms
before any runs, records each, aggregates at the end, and says why it cannot resume a study.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import run_evsys

from evsys.compose.compose import compose_and_validate
from evsys.config import ExperimentConfig, Metadata
from evsys.sweep.foreign import arm_objective, sample_arms

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'evsys[dev]'")

EM, LOSS = "eval/exact_match", "train/final_loss"
# The mock policy learns a row with probability 0.5 * lr / 1e-4: over this interval the learning
# rate decides how much of the data 6 steps memorise.
OPTUNA = [
    "--multirun",
    "hydra/sweeper=optuna",
    "hydra.sweeper.n_trials=6",
    "hydra.sweeper.n_jobs=2",
    "algorithm.params.learning_rate=interval(1e-6,1e-4)",
    "algorithm.params.max_steps=6",
    "hydra.sweep.dir=study",
]
TPE = [
    "hydra/sweeper/sampler=tpe",
    "hydra.sweeper.sampler.seed=7",
    "hydra.sweeper.sampler.n_startup_trials=3",
]
MAXIMISE_EM = ["hydra.sweeper.direction=maximize", f"+metadata.success_metric={EM}"]


def records(sweep: Path) -> dict[str, dict]:
    """Arm directory name → its run_result.json."""
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/run_result.json")}


def override_value(record: dict, key: str) -> float:
    (value,) = [line.split("=", 1)[1] for line in record["overrides"] if line.startswith(key)]
    return float(value)


def test_an_optuna_study_optimises_what_the_arms_return(workdir: Path) -> None:
    done = run_evsys(*OPTUNA, *TPE, *MAXIMISE_EM, cwd=workdir)
    assert done.returncode == 0, done.stderr
    sweep = workdir / "study"
    arms = records(sweep)
    assert sorted(arms) == [str(i) for i in range(6)]  # one recorded arm per trial
    assert {r["status"] for r in arms.values()} == {"completed"}
    assert "Failed experiment" not in done.stdout + done.stderr
    values = {name: r["metrics"][EM] for name, r in arms.items()}
    assert len(set(values.values())) > 1  # the learning rate mattered: real, varied values

    optuna = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    result = json.loads((sweep / "sweep_result.json").read_text())
    assert optuna["best_value"] == result["best_value"] == max(values.values())
    best = arms[result["best_arm"]]
    assert best["metrics"][EM] == optuna["best_value"]
    lr = "algorithm.params.learning_rate"
    best_lrs = {
        override_value(r, lr) for r in arms.values() if r["metrics"][EM] == max(values.values())
    }
    assert optuna["best_params"][lr] in best_lrs

    plan = json.loads((sweep / "sweep_plan.json").read_text())
    assert [a["dir"] for a in plan["arms"]] == [str(i) for i in range(6)]
    assert plan["sweeper"].endswith("OptunaSweeper") and plan["success_metric"]["name"] == EM
    summary = (sweep / "summary.md").read_text()
    assert f"Best arm: {result['best_arm']}" in summary and "6 completed" in summary

    shown = run_evsys("results", "study", cwd=workdir, module=False)
    assert shown.returncode == 0 and "6 completed" in shown.stdout
    resumed = run_evsys("resume", "study", cwd=workdir, module=False)
    assert resumed.returncode == 2
    assert "cannot resume" in resumed.stderr and "hydra.sweeper.storage" in resumed.stderr
    assert records(sweep) == arms  # nothing re-ran


def test_a_multi_objective_study_gets_a_tuple_per_arm(workdir: Path) -> None:
    objectives = (
        f"+metadata.objectives=[{{name: {EM}, direction: max}}, {{name: {LOSS}, direction: min}}]"
    )
    done = run_evsys(
        *OPTUNA, *TPE, "hydra.sweeper.direction=[maximize,minimize]", objectives, cwd=workdir
    )
    assert done.returncode == 0, done.stderr
    arms = records(workdir / "study")
    pairs = {(r["metrics"][EM], r["metrics"][LOSS]) for r in arms.values()}
    optuna = yaml.safe_load((workdir / "study" / "optimization_results.yaml").read_text())
    front = [tuple(s["values"]) for s in optuna["solutions"]]
    assert front and all(values in pairs for values in front)
    # the Pareto front: no arm beats a solution on both objectives
    for em, loss in front:
        assert not any(e > em and l < loss for e, l in pairs)  # noqa: E741


def test_a_failed_trial_does_not_end_the_study(workdir: Path) -> None:
    done = run_evsys(
        *OPTUNA,
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=7",
        "backend.params.fail_at_step=choice(2,100)",  # 100: past the last step, never fails
        *MAXIMISE_EM,
        cwd=workdir,
    )
    arms = records(workdir / "study")
    statuses = sorted(r["status"] for r in arms.values())
    assert len(arms) == 6 and "completed" in statuses and "failed" in statuses, statuses
    assert done.returncode == 1  # an arm failed; the study still ran every trial
    result = json.loads((workdir / "study" / "sweep_result.json").read_text())
    assert sorted(result["failed"]) == sorted(n for n, r in arms.items() if r["status"] == "failed")


def test_optuna_sweeps_are_checked_before_any_trial(workdir: Path) -> None:
    wrong_way = run_evsys(
        *OPTUNA, "hydra.sweeper.direction=minimize", f"+metadata.success_metric={EM}", cwd=workdir
    )
    assert wrong_way.returncode == 2
    assert "hydra.sweeper.direction" in wrong_way.stderr and "maximize" in wrong_way.stderr
    no_metric = run_evsys(*OPTUNA, *TPE, "hydra.sweeper.direction=maximize", cwd=workdir)
    assert no_metric.returncode == 2 and "metadata.success_metric" in no_metric.stderr
    # an interval is checked at both ends: lora_rank 0 is refused before anything runs
    bad_end = run_evsys(
        *OPTUNA, *MAXIMISE_EM, "algorithm.params.lora_rank=interval(0,8)", cwd=workdir
    )
    assert bad_end.returncode == 2
    assert "algorithm.params.lora_rank" in bad_end.stderr and "Traceback" not in bad_end.stderr
    assert not (workdir / "study").exists()


def test_the_basic_sweeper_refuses_a_bad_arm_and_resumes(workdir: Path) -> None:
    # each value alone is fine; two epochs with a step limit are not
    args = [
        "--multirun", "hydra/sweeper=basic", "data.limit=8",
        "algorithm.params.num_epochs=1,2", "algorithm.params.max_steps=null,2",
        "hydra.sweep.dir=grid",
    ]  # fmt: skip
    done = run_evsys(*args, cwd=workdir)
    assert done.returncode == 2
    assert "is invalid; it was not trained" in done.stderr and "Traceback" not in done.stderr
    arms = records(workdir / "grid")
    assert [arms[str(i)]["status"] for i in range(4)] == ["completed"] * 3 + ["failed"]
    assert arms["3"]["error_type"] == "ConfigError"
    assert not (workdir / "grid" / "3" / "checkpoints").exists()  # refused, not trained
    assert json.loads((workdir / "grid" / "sweep_result.json").read_text())["failed"] == ["3"]

    again = run_evsys("resume", "grid", cwd=workdir, module=False)
    assert again.returncode == 2, again.stderr
    after = records(workdir / "grid")
    assert all(after[str(i)]["run_id"] == arms[str(i)]["run_id"] for i in range(3))  # kept


def test_sample_arms_set_each_value_of_each_key_once() -> None:
    lr = "algorithm.params.learning_rate"
    arms = sample_arms(["seed=1,2,3", f"{lr}=interval(1e-5,1e-3)", "~tags"])
    assert arms == [  # fixed overrides as written: `~tags`, not `~tags=null`
        ["seed=1", f"{lr}=1e-05", "~tags"],
        ["seed=2", f"{lr}=1e-05", "~tags"],
        ["seed=3", f"{lr}=1e-05", "~tags"],
        ["seed=1", f"{lr}=0.001", "~tags"],
    ]


def config(metadata: dict) -> ExperimentConfig:
    _, base = compose_and_validate([])
    return base.model_copy(update={"metadata": Metadata.model_validate(metadata)})


@pytest.mark.parametrize(
    ("metadata", "status", "metrics", "expected"),
    [
        ({"success_metric": {"name": LOSS, "direction": "min"}}, "completed", {LOSS: 0.25}, 0.25),
        ({"objectives": [EM, LOSS]}, "completed", {EM: 0.5, LOSS: 0.25}, (0.5, 0.25)),
        ({"success_metric": EM}, "failed", {EM: 0.5}, None),
        ({"success_metric": EM}, "completed", {LOSS: 0.25}, None),  # it lacks the metric
        ({"success_metric": EM}, "completed", {EM: math.nan}, None),  # NaN breaks Optuna 2
        ({}, "completed", {EM: 0.5}, None),
    ],
)
def test_arm_objective(metadata: dict, status: str, metrics: dict, expected: object) -> None:
    record = {"status": status, "metrics": metrics}
    assert arm_objective(config(metadata), record) == expected


def test_plan_says_another_sweeper_proposes_its_arms_as_it_runs(workdir: Path) -> None:
    done = run_evsys("plan", "hydra/sweeper=optuna", *OPTUNA[2:], module=False, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "hydra_optuna_sweeper" in done.stdout and "as it runs" in done.stdout
    assert not any(workdir.iterdir())
