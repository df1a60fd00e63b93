"""Sweeps: pre-flight of every arm, arm names, isolation, run groups, resume, plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_evsys
from hypothesis import given
from hypothesis import strategies as st

from evsys.compose.compose import compose
from evsys.errors import ConfigError
from evsys.sweep.arm_names import unique_names
from evsys.sweep.plan import SweepAxes, enumerate_arms, preflight

EXPERIMENT = """\
# @package _global_
name: pairs
algorithm:
  params: {max_steps: 3}
metadata:
  success_metric: {name: eval/exact_match, direction: max}
hydra:
  sweeper:
    paired:
      - {algorithm.params.learning_rate: "1e-4,3e-4", algorithm.params.warmup_ratio: "0,0.1"}
    n_repeats: 3
    base_seed: 10
    name_template: "{base}__lr{algorithm.params.learning_rate}__s{seed}"
"""


def sweep_dir(workdir: Path) -> Path:
    (found,) = (workdir / "outputs" / "sweeps").glob("*/*")
    return found


def test_a_sweep_names_runs_and_aggregates_its_arms(workdir: Path) -> None:
    done = run_evsys(
        "--multirun", "experiment=lora_rank", "algorithm.params.max_steps=5", cwd=workdir
    )
    assert done.returncode == 0, done.stderr
    root = sweep_dir(workdir)
    names = [a["name"] for a in json.loads((root / "sweep_plan.json").read_text())["arms"]]
    assert names == [f"lora_rank{r}__seed{s}" for r in (8, 32) for s in (1, 2, 3)]
    for name in names:
        record = json.loads((root / name / "run_result.json").read_text())
        assert record["status"] == "completed"
        assert record["finished"] is True
    result = json.loads((root / "sweep_result.json").read_text())
    assert result["best_arm"] in names
    assert len(result["groups"]) == 2  # one per rank, three seeds each
    assert (root / "summary.md").read_text().count("| lora_rank") >= 6
    assert (root / "success_metric.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_bad_arm_refuses_the_whole_sweep(workdir: Path) -> None:
    done = run_evsys(
        "--multirun",
        "algorithm.params.lora_rank=8,0",
        "algorithm.params.batch_size=2,x",
        cwd=workdir,
    )
    assert done.returncode == 2
    assert "3 of 4 arms are invalid; no arm was launched" in done.stderr
    # one block per problem, naming the arms it affects
    assert done.stderr.count("arms:") == 2
    assert "arms:     #1 lora_rank8__batch_sizex, #3 lora_rank0__batch_sizex" in done.stderr
    assert "from:     override 'algorithm.params.batch_size=x'" in done.stderr
    assert not (workdir / "outputs").exists()


def test_a_failing_arm_does_not_stop_the_others(workdir: Path) -> None:
    done = run_evsys(
        "--multirun",
        "backend.params.fail_at_step=null,1",
        "algorithm.params.max_steps=2",
        cwd=workdir,
    )
    assert done.returncode == 1
    result = json.loads((sweep_dir(workdir) / "sweep_result.json").read_text())
    statuses = {arm["name"]: arm["status"] for arm in result["arms"]}
    assert statuses == {"fail_at_stepnull": "completed", "fail_at_step1": "failed"}
    assert result["failed"] == ["fail_at_step1"]


def test_paired_axes_repeats_and_name_template(workdir: Path) -> None:
    (workdir / "experiments").mkdir()
    (workdir / "experiments" / "pairs.yaml").write_text(EXPERIMENT)
    plan = run_evsys("plan", "experiment=pairs", "--json", cwd=workdir, module=False)
    assert plan.returncode == 0, plan.stderr
    arms = json.loads(plan.stdout)["arms"]
    assert [a["name"] for a in arms] == [
        f"pairs__lr{lr}__s{seed}" for lr in ("0p0001", "0p0003") for seed in (10, 11, 12)
    ]
    # arms equal but for the seed form one run group
    assert len({a["group_id"] for a in arms}) == 2
    assert len({a["config_hash"] for a in arms}) == 6
    second = next(a for a in arms if a["name"] == "pairs__lr0p0003__s10")
    assert "algorithm.params.warmup_ratio=0.1" in second["overrides"]


def test_resume_skips_completed_arms_and_reruns_the_rest(workdir: Path) -> None:
    (workdir / "good.jsonl").write_text('{"prompt": "a", "answer": "b"}\n')
    (workdir / "bad.jsonl").write_text('{"prompt": "a", "answer": "b"}\nbroken\n')
    common = ("data.eval_path=null", "algorithm.params.max_steps=2", "hydra.sweep.dir=sweep")
    first = run_evsys("--multirun", "data.path=good.jsonl,bad.jsonl", *common, cwd=workdir)
    assert first.returncode == 1
    root = workdir / "sweep"
    done_before = json.loads((root / "pathgood.jsonl" / "run_result.json").read_text())

    (workdir / "bad.jsonl").write_text('{"prompt": "a", "answer": "b"}\n')  # fix the data
    again = run_evsys("resume", "sweep", cwd=workdir, module=False)
    assert again.returncode == 0, again.stderr
    done_after = json.loads((root / "pathgood.jsonl" / "run_result.json").read_text())
    assert done_after["run_id"] == done_before["run_id"]  # skipped, not re-run
    rerun = json.loads((root / "pathbad.jsonl" / "run_result.json").read_text())
    assert rerun["status"] == "completed"
    (attempt,) = (root / ".attempts").iterdir()  # the failed attempt is kept
    assert json.loads((attempt / "run_result.json").read_text())["status"] == "failed"


def test_resume_refuses_when_an_arm_config_changed(workdir: Path) -> None:
    (workdir / "experiments").mkdir()
    experiment = workdir / "experiments" / "small.yaml"
    experiment.write_text("# @package _global_\nalgorithm:\n  params: {max_steps: 2}\n")
    first = run_evsys(
        "--multirun", "experiment=small", "seed=1,2", "hydra.sweep.dir=sweep", cwd=workdir
    )
    assert first.returncode == 0, first.stderr
    experiment.write_text("# @package _global_\nalgorithm:\n  params: {max_steps: 3}\n")
    again = run_evsys("resume", "sweep", cwd=workdir, module=False)
    assert again.returncode == 2
    # the setting that changed, old → new, once for all the arms it changed in: not hashes
    changed = "algorithm.params.max_steps: changed since the sweep started: 2 → 3 (every arm)"
    assert changed in again.stderr and "hash" not in again.stderr
    # a plan written before it recorded each arm's config: the arms' own records say it
    plan_path = workdir / "sweep" / "sweep_plan.json"
    plan = json.loads(plan_path.read_text())
    plan["arms"] = [{k: v for k, v in arm.items() if k != "config"} for arm in plan["arms"]]
    plan_path.write_text(json.dumps(plan))
    again = run_evsys("resume", "sweep", cwd=workdir, module=False)
    assert again.returncode == 2 and changed in again.stderr


def test_plan_marks_invalid_arms(workdir: Path) -> None:
    done = run_evsys(
        "plan", "seed=1,2", "algorithm.params.lora_rank=0,4", cwd=workdir, module=False
    )
    assert done.returncode == 2
    assert "INVALID" in done.stdout and "2 of 4 arms are invalid" in done.stderr


@pytest.mark.parametrize(
    "arguments",
    [
        ["algorithm=sft,rl", "seed=1,2", "algorithm.params.lora_rank=4,16"],
        ["experiment=lora_rank,rl_arithmetic", "algorithm.params.learning_rate=1e-5,3e-4"],
        ["data=tool_selection,arithmetic", "eval.max_tokens=8,16", "+metadata.tags=[a]"],
        ["algorithm.params.max_steps=range(1,4)", "name=x,y", "log_store=jsonl,tensorboard"],
    ],
)
def test_the_fast_preflight_is_exactly_what_compose_gives(
    workdir: Path, arguments: list[str]
) -> None:
    arms = preflight(enumerate_arms(arguments, SweepAxes()))
    assert len(arms) >= 4
    for arm in arms:
        assert not arm.problems, arm.problems
        assert arm.resolved == compose(arm.overrides).config, arm.overrides


def test_each_arm_has_a_directory_of_its_own(workdir: Path) -> None:
    # The two arms named "a" are numbered past the arm already called "a-1".
    arms = preflight(enumerate_arms(["name=a-1,a,a"], SweepAxes()))
    assert [arm.name for arm in arms] == ["a-1", "a-2", "a-3"]


@given(st.lists(st.sampled_from(["a", "a-1", "a-2", "a-1-1", "b"]), max_size=8))
def test_repeated_names_are_numbered_apart_from_every_other(names: list[str]) -> None:
    unique = unique_names(names)
    assert len(set(unique)) == len(unique) == len(names)
    for name, given_name in zip(unique, names, strict=True):
        assert name == given_name if names.count(given_name) == 1 else name.startswith(given_name)


def test_output_directories_are_claimed_by_one_process(workdir: Path) -> None:
    import os

    from evsys.errors import ConfigError
    from evsys.output_dirs import LOCK, claim, release

    stamped = workdir / "outputs" / "sweeps" / "10-40-02_x"
    first, second = claim(stamped, fresh=True), claim(stamped, fresh=True)
    assert (first, second) == (stamped, stamped.with_name("10-40-02_x_2"))  # same second
    # a fixed directory is reused on purpose (resume), but never while a live process holds it
    fixed = workdir / "sweep"
    fixed.mkdir()
    (fixed / LOCK).write_text(f"{os.getppid()} {__import__('socket').gethostname()}\n")
    with pytest.raises(ConfigError, match="in use by another evsys process"):
        claim(fixed, fresh=False)
    (fixed / LOCK).write_text("999999999 \n")  # its owner died: the lock is stale
    assert claim(fixed, fresh=False) == fixed
    for directory in (first, second, fixed):
        release(directory)
    assert not (fixed / LOCK).exists() and not first.exists()  # nothing written: nothing kept


def test_two_sweeps_never_share_a_directory(workdir: Path) -> None:
    from evsys.app import preflight
    from evsys.output_dirs import _release_all

    one = preflight(["seed=1,2"], "base", multirun=True)
    two = preflight(["seed=1,2"], "base", multirun=True)
    _release_all()
    assert one != two
    assert two[0].rstrip("'").endswith("_2") or two[0] > one[0]


def test_explicit_arms_cross_with_repeats_and_refuse_sweeps() -> None:
    """hydra.sweeper.arms: each arm its own lines (group choices too), as listed."""
    axes = SweepAxes(arms=[["algorithm=sft", "seed=1"], ["algorithm=rl"]], n_repeats=1)
    # an arm's own lines first: the command line and the other axes override them
    assert enumerate_arms(["backend=mock", "data.limit=3,4"], axes) == [
        ["algorithm=sft", "seed=1", "backend=mock", "data.limit=3"],
        ["algorithm=sft", "seed=1", "backend=mock", "data.limit=4"],
        ["algorithm=rl", "backend=mock", "data.limit=3"],
        ["algorithm=rl", "backend=mock", "data.limit=4"],
    ]
    repeated = SweepAxes(arms=[["algorithm=sft"], ["algorithm=rl"]], n_repeats=2, base_seed=5)
    assert enumerate_arms([], repeated) == [
        ["algorithm=sft", "seed=5"],
        ["algorithm=sft", "seed=6"],
        ["algorithm=rl", "seed=5"],
        ["algorithm=rl", "seed=6"],
    ]
    with pytest.raises(ConfigError, match="one value per key"):
        enumerate_arms([], SweepAxes(arms=[["seed=1,2"]]))
    with pytest.raises(ConfigError, match="n_repeats and a seed override"):
        enumerate_arms([], SweepAxes(arms=[["seed=1"]], n_repeats=2))


def test_a_success_metric_no_arm_reported_is_an_error_after_the_sweep(workdir: Path) -> None:
    # Validation cannot know every metric an arm reports (custom recipes and callbacks add
    # theirs): the arms run, and the sweep names what they reported instead.
    sweep = ["--multirun", "seed=1,2", "algorithm.params.max_steps=2"]
    done = run_evsys(*sweep, "metadata.success_metric=eval/exact_mach", cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    line = next(x for x in done.stderr.splitlines() if "metadata.success_metric" in x)
    assert line.startswith("evsys: metadata.success_metric: no arm reported `eval/exact_mach`; ")
    assert "`train/final_loss`" in line and line.endswith("(did you mean `eval/exact_match`?)")
    result = json.loads((sweep_dir(workdir) / "sweep_result.json").read_text())
    assert (
        result["best_arm"] is None and "No arm reported `eval/exact_mach`" in result["conclusion"]
    )

    ranked = run_evsys(*sweep, "metadata.success_metric=train/final_loss", cwd=workdir)
    assert ranked.returncode == 0, ranked.stderr
