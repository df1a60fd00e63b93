"""Sweep aggregation: arms, run groups, the best arm, summary.md, the plot and ``evsys results``.

The sweep directories are built by hand (``sweep_plan.json`` plus each arm's ``run_result.json``
written by the real writer), so every expected number below is computed by hand.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import struct
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import run_evsys

from evsys.errors import DataError
from evsys.protocols import RunResult
from evsys.run.record import config_hash, write_run_result, write_run_started
from evsys.sweep.aggregate import (
    PLOT_PNG,
    SUMMARY_MD,
    SWEEP_PLAN,
    SWEEP_RESULT,
    aggregate,
    group_id,
    write_sweep_outputs,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EM, LOSS = "eval/exact_match", "train/final_loss"

# (lora_rank, seed) → status, exact match, final loss; rank 32 seed 3 never finished (missing).
ARMS = {
    (8, 1): ("completed", 0.5, 1.0),
    (8, 2): ("completed", 0.6, 0.8),
    (8, 3): ("failed", None, None),
    (32, 1): ("completed", 0.8, 0.4),
    (32, 2): ("completed", 0.9, 0.6),
    (32, 3): ("missing", None, None),
}
FAILURE = "BackendError: mock backend failed at step 3 (fail_at_step=3)\nsecond line of the error"


def experiment_config(rank: int, seed: int, success_metric: object) -> dict:
    return {
        "name": "lora_rank",
        "seed": seed,
        "algorithm": {"kind": "sft", "params": {"lora_rank": rank, "max_steps": 40}},
        "backend": {"kind": "mock", "params": {"fail_at_step": None}},
        "metadata": {"success_metric": success_metric, "notes": {"api_key": "sk-secret"}},
    }  # fmt: skip


def write_arm(run_dir: Path, config: dict, overrides: list[str], status: str, metrics: dict):
    run_dir.mkdir(parents=True)
    result = RunResult(
        run_id=f"lora_rank-{run_dir.name}",
        status=status,
        metrics=metrics,
        error=FAILURE if status == "failed" else None,
    )
    write_run_result(
        run_dir,
        result,
        name=config["name"],
        config=config,
        overrides=overrides,
        started_at=datetime.now(UTC),
    )


def make_sweep(root: Path, success_metric: object = None, plan: bool = True) -> Path:
    """The 2 ranks × 3 seeds sweep of ARMS, with or without its sweep_plan.json."""
    success_metric = success_metric or {"name": EM, "direction": "max"}
    sweep = root / "lora_rank"
    sweep.mkdir()
    planned = []
    for num, ((rank, seed), (status, em, loss)) in enumerate(ARMS.items()):
        config = experiment_config(rank, seed, success_metric)
        overrides = ["experiment=lora_rank", f"algorithm.params.lora_rank={rank}", f"seed={seed}"]
        name = f"rank{rank}-seed{seed}" if plan else str(num)
        planned.append(
            {"name": name, "dir": name, "overrides": overrides, "seed": seed,
             "config_hash": config_hash(config), "group_id": group_id(config)}
        )  # fmt: skip
        if status == "missing":
            if not plan:  # Hydra made the job's directory, the arm died before its record
                (sweep / name / ".hydra").mkdir(parents=True)
                (sweep / name / ".hydra" / "overrides.yaml").write_text(
                    "".join(f"- {o}\n" for o in overrides)
                )
            continue
        metrics = {EM: em, LOSS: loss, "train/steps": 40.0} if status == "completed" else {}
        write_arm(sweep / name, config, overrides, status, metrics)
    if plan:
        payload = {
            "name": "lora_rank",
            "created_at": "2026-11-22T10:31:07+00:00",
            "success_metric": success_metric,
            "arms": planned,
        }
        (sweep / SWEEP_PLAN).write_text(json.dumps(payload))
    return sweep


# -- group ids ----------------------------------------------------------------------------------


def test_group_id_ignores_the_seed_and_nothing_else() -> None:
    base = experiment_config(8, 1, EM)
    gid = group_id(base)
    assert len(gid) == 16 and int(gid, 16) >= 0
    assert group_id(experiment_config(8, 2, EM)) == gid
    assert group_id(dict(reversed(list(base.items())))) == gid  # key order does not matter
    assert group_id(experiment_config(32, 1, EM)) != gid
    assert group_id({**base, "name": "other"}) != gid
    # the same id from the config in memory and from the redacted one in run_result.json
    redacted = json.loads(json.dumps(base))
    redacted["metadata"]["notes"]["api_key"] = "<redacted>"
    assert group_id(redacted) == gid


# -- aggregate ----------------------------------------------------------------------------------


def test_aggregate_reads_every_arm_in_plan_order(tmp_path: Path) -> None:
    summary = aggregate(make_sweep(tmp_path))
    assert summary.name == "lora_rank"
    assert [a.name for a in summary.arms] == [
        "rank8-seed1", "rank8-seed2", "rank8-seed3", "rank32-seed1", "rank32-seed2", "rank32-seed3",
    ]  # fmt: skip
    assert [a.status for a in summary.arms] == [s for s, _, _ in ARMS.values()]
    assert summary.failed == ["rank8-seed3"]
    assert summary.missing == ["rank32-seed3"]
    failed = summary.arms[2]
    assert failed.error == FAILURE and failed.metrics == {}
    assert summary.arms[0].seed == 1 and summary.arms[0].metrics[EM] == 0.5
    assert summary.arms[5].run_dir == str(tmp_path / "lora_rank" / "rank32-seed3")


def test_best_arm_by_max(tmp_path: Path) -> None:
    summary = aggregate(make_sweep(tmp_path))
    assert summary.success_metric == {"name": EM, "direction": "max"}
    assert (summary.best_arm, summary.best_value) == ("rank32-seed2", 0.9)


def test_best_arm_by_min(tmp_path: Path) -> None:
    summary = aggregate(make_sweep(tmp_path, {"name": LOSS, "direction": "min"}))
    assert (summary.best_arm, summary.best_value) == ("rank32-seed1", 0.4)


def test_a_tie_goes_to_the_first_arm_in_plan_order(tmp_path: Path) -> None:
    summary = aggregate(make_sweep(tmp_path, {"name": "train/steps", "direction": "max"}))
    assert (summary.best_arm, summary.best_value) == ("rank8-seed1", 40.0)


def test_groups_are_mean_and_sample_std_over_completed_arms(tmp_path: Path) -> None:
    rank8, rank32 = aggregate(make_sweep(tmp_path)).groups
    assert rank8.arms == ["rank8-seed1", "rank8-seed2", "rank8-seed3"]
    assert rank8.label == "experiment=lora_rank algorithm.params.lora_rank=8"
    assert rank8.n == 2  # the failed arm is not averaged
    # hand-computed: mean (0.5 + 0.6) / 2; sample std sqrt(2 * 0.05² / (2 - 1))
    assert rank8.metrics[EM].mean == pytest.approx(0.55, abs=1e-12)
    assert rank8.metrics[EM].std == pytest.approx(math.sqrt(0.005), abs=1e-12)
    assert rank8.metrics[LOSS].mean == pytest.approx(0.9, abs=1e-12)
    assert rank8.metrics[LOSS].std == pytest.approx(math.sqrt(0.02), abs=1e-12)
    assert rank32.arms == ["rank32-seed1", "rank32-seed2", "rank32-seed3"]
    assert rank32.n == 2  # the missing arm neither
    assert rank32.metrics[EM].mean == pytest.approx(0.85, abs=1e-12)
    assert rank32.metrics[EM].std == pytest.approx(math.sqrt(0.005), abs=1e-12)
    assert rank32.metrics["train/steps"].std == 0.0


def test_a_group_of_one_has_no_std(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    (sweep / "rank32-seed2" / "run_result.json").unlink()
    rank32 = aggregate(sweep).groups[1]
    assert (rank32.n, rank32.metrics[EM].mean, rank32.metrics[EM].std) == (1, 0.8, None)


def test_a_result_without_the_completion_marker_is_missing(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    path = sweep / "rank8-seed1" / "run_result.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "finished": False}))
    assert aggregate(sweep).missing == ["rank8-seed1", "rank32-seed3"]


def started(run_dir: Path, pid: int) -> None:
    """``run_dir`` holds the record a run writes when it starts, by process ``pid``."""
    config = experiment_config(32, 3, EM)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_started(
        run_dir,
        run_id="r",
        name="lora_rank",
        config=config,
        overrides=[],
        started_at=datetime.now(UTC),
    )
    record = json.loads((run_dir / "run_result.json").read_text())
    (run_dir / "run_result.json").write_text(json.dumps({**record, "pid": pid}))


def test_results_tells_running_interrupted_failed_and_missing_arms_apart(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)  # rank8-seed3 failed, rank32-seed3 never started
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    started(sweep / "rank32-seed2", pid=os.getpid())  # still running: this process
    started(sweep / "rank32-seed1", pid=int(gone.stdout))  # its process ended without a record
    summary = aggregate(sweep)
    statuses = {a.name: a.status for a in summary.arms}
    assert statuses["rank32-seed2"] == "running" and statuses["rank32-seed1"] == "interrupted"
    assert summary.running == ["rank32-seed2"]
    assert summary.failed == ["rank8-seed3", "rank32-seed1"]
    assert summary.missing == ["rank32-seed3"]
    assert summary.arms[4].metrics == {}  # a running arm has no results yet
    done = run_evsys("results", str(sweep), cwd=tmp_path, module=False)
    assert done.returncode == 0, done.stderr
    assert "Arms: 6 — 2 completed, 2 failed, 1 running, 1 not started" in done.stdout
    assert "Running (started, no result yet): rank32-seed2" in done.stdout
    assert "Not started (no run_result.json yet): rank32-seed3" in done.stdout
    # a record from another machine cannot be checked: it is running
    record = json.loads((sweep / "rank32-seed1" / "run_result.json").read_text())
    (sweep / "rank32-seed1" / "run_result.json").write_text(
        json.dumps({**record, "host": "elsewhere"})
    )
    assert aggregate(sweep).running == ["rank32-seed1", "rank32-seed2"]


def test_not_a_sweep_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        aggregate(tmp_path / "nowhere")
    with pytest.raises(DataError, match="not a sweep directory"):
        aggregate(tmp_path)


# -- discovery: a plain Hydra multirun, no sweep_plan.json --------------------------------------


def test_discovery_without_a_plan(tmp_path: Path) -> None:
    summary = aggregate(make_sweep(tmp_path, success_metric=EM, plan=False))
    assert [a.name for a in summary.arms] == ["0", "1", "2", "3", "4", "5"]
    assert summary.arms[1].overrides == [
        "experiment=lora_rank", "algorithm.params.lora_rank=8", "seed=2",
    ]  # fmt: skip
    assert summary.arms[1].seed == 2
    assert summary.success_metric == {"name": EM, "direction": "max"}  # a bare name means max
    assert (summary.best_arm, summary.best_value) == ("4", 0.9)
    assert summary.failed == ["2"] and summary.missing == ["5"]
    # the missing arm has no recorded config; its overrides put it in the rank-32 group
    assert [g.arms for g in summary.groups] == [["0", "1", "2"], ["3", "4", "5"]]
    assert summary.groups[0].group_id == group_id(experiment_config(8, 1, EM))


def test_discovery_orders_arms_by_job_number(tmp_path: Path) -> None:
    for num in (10, 2, 1):
        (tmp_path / str(num) / ".hydra").mkdir(parents=True)
        (tmp_path / str(num) / ".hydra" / "overrides.yaml").write_text(f"- seed={num}\n")
    summary = aggregate(tmp_path)
    assert [a.name for a in summary.arms] == ["1", "2", "10"]
    assert summary.missing == ["1", "2", "10"] and len(summary.groups) == 1


# -- files written at multirun end --------------------------------------------------------------


def test_write_sweep_outputs(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    summary = write_sweep_outputs(sweep)

    result = json.loads((sweep / SWEEP_RESULT).read_text())
    assert result["best_arm"] == "rank32-seed2" == summary.best_arm
    assert result["success_metric"] == {"name": EM, "direction": "max"}
    assert result["failed"] == ["rank8-seed3"] and result["missing"] == ["rank32-seed3"]
    row = result["arms"][0]
    assert {"name", "dir", "overrides", "status", "metrics", "run_dir", "error"} <= set(row)
    assert row["metrics"][EM] == 0.5 and row["run_dir"] == str(sweep / "rank8-seed1")
    assert result["groups"][0]["metrics"][EM]["n"] == 2
    assert not list(sweep.glob(".*.tmp"))

    md = (sweep / SUMMARY_MD).read_text()
    assert "| arm | algorithm.params.lora_rank | seed | status | eval/exact_match |" in md
    assert "| rank8-seed1 | 8 | 1 | completed | 0.5 | 1 | 40 |" in md
    assert "| rank8-seed3 | 8 | 3 | failed |  |  |  |" in md
    assert "| rank32-seed3 | 32 | 3 | missing |  |  |  |" in md
    assert (
        "| experiment=lora_rank algorithm.params.lora_rank=8 | 3 | 2 | 0.55 ± 0.07071 (2) |" in md
    )
    assert "Best arm: rank32-seed2 (eval/exact_match = 0.9, max)" in md
    assert "- `rank8-seed3` (failed): BackendError: mock backend failed at step 3" in md
    assert "second line of the error" not in md
    assert "Same in every arm: `experiment=lora_rank`" in md
    assert f"]({PLOT_PNG})" in md

    png = (sweep / PLOT_PNG).read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000
    width, height = struct.unpack(">II", png[16:24])  # IHDR: one subplot, the lora_rank axis
    assert (width, height) == (450, 380)


def test_no_plot_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it raises ImportError
    sweep = make_sweep(tmp_path)
    write_sweep_outputs(sweep)
    assert not (sweep / PLOT_PNG).exists()
    assert "pip install 'evsys[plot]'" in (sweep / SUMMARY_MD).read_text()


def test_no_plot_without_a_success_metric_or_a_swept_axis(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    plan = json.loads((sweep / SWEEP_PLAN).read_text())
    (sweep / SWEEP_PLAN).write_text(json.dumps({**plan, "success_metric": None}))
    for arm in sweep.glob("*/run_result.json"):  # the runs' own metadata neither
        arm.write_text(arm.read_text().replace(f'"name": "{EM}"', '"name": null'))
    write_sweep_outputs(sweep)
    md = (sweep / SUMMARY_MD).read_text()
    assert "Best arm: none (no success metric)" in md
    assert "No plot: no success metric" in md and not (sweep / PLOT_PNG).exists()

    (sweep / SWEEP_PLAN).write_text(json.dumps({**plan, "arms": plan["arms"][:3]}))
    write_sweep_outputs(sweep)
    assert "No plot: no swept axis besides the seed." in (sweep / SUMMARY_MD).read_text()


# -- evsys results ------------------------------------------------------------------------------


def test_results_prints_the_summary_and_writes_nothing(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    before = sorted(p.name for p in sweep.iterdir())
    done = run_evsys("results", str(sweep), cwd=tmp_path, module=False)
    assert done.returncode == 0, done.stderr
    assert "| rank32-seed2 | 32 | 2 | completed | 0.9 |" in done.stdout
    assert "Best arm: rank32-seed2 (eval/exact_match = 0.9, max)" in done.stdout
    assert "No plot yet" in done.stdout
    assert sorted(p.name for p in sweep.iterdir()) == before
    write_sweep_outputs(sweep)
    assert done.stdout.replace("No plot yet: it is written when the multirun ends.", "") == (
        (sweep / SUMMARY_MD).read_text().replace(f"![eval/exact_match per swept axis]({PLOT_PNG})", "")
    )  # fmt: skip


def test_results_json(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    done = run_evsys("results", str(sweep), "--json", cwd=tmp_path, module=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == aggregate(sweep).to_dict()


def test_results_csv(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    done = run_evsys("results", str(sweep), "--csv", cwd=tmp_path, module=False)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert list(rows[0]) == [
        "arm", "status", "experiment", "algorithm.params.lora_rank", "seed", EM, LOSS, "train/steps",
    ]  # fmt: skip
    assert rows[3] == {
        "arm": "rank32-seed1", "status": "completed", "experiment": "lora_rank",
        "algorithm.params.lora_rank": "32", "seed": "1", EM: "0.8", LOSS: "0.4", "train/steps": "40.0",
    }  # fmt: skip
    assert rows[2]["status"] == "failed" and rows[2][EM] == ""
    assert rows[5]["status"] == "missing"


def test_results_of_a_path_that_is_no_sweep_exits_2(tmp_path: Path) -> None:
    for path in (tmp_path / "nowhere", tmp_path):
        done = run_evsys("results", str(path), cwd=tmp_path, module=False)
        assert done.returncode == 2
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
        assert done.stderr.startswith("evsys results: ") and "Traceback" not in done.stderr


# -- end to end ---------------------------------------------------------------------------------


def test_a_real_mock_multirun_aggregates(tmp_path: Path) -> None:
    done = run_evsys("--multirun", "seed=1,2", "algorithm.params.max_steps=2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (sweep,) = (tmp_path / "outputs" / "sweeps").glob("*/*")
    summary = aggregate(sweep)
    assert [(a.status, a.seed) for a in summary.arms] == [("completed", 1), ("completed", 2)]
    (group,) = summary.groups
    assert group.n == 2 and group.label == "algorithm.params.max_steps=2"
    assert group.metrics["train/steps"].mean == 2.0
