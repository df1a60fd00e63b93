"""``evsys diff``: two runs' resolved-config and metric differences, from their records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_evsys, run_results

from evsys.run.compare import diff_runs, flatten, load_record

FAST = ("backend=mock", "model=tiny", "data=arithmetic", "eval=default")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two real mock runs that differ in one recipe field and the seed."""
    root = tmp_path_factory.mktemp("diff")
    for steps, seed in ((4, 1), (12, 2)):
        args = (*FAST, f"algorithm.params.max_steps={steps}", f"seed={seed}", f"name=run{seed}")
        done = run_evsys(*args, cwd=root)
        assert done.returncode == 0, done.stderr
    a, b = sorted(run_results(root / "outputs"), key=lambda r: r["config"]["seed"])
    return Path(a["run_dir"]), Path(b["run_dir"])


def test_diff_prints_config_and_metric_changes(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    done = run_evsys("diff", str(a), str(b / "run_result.json"), cwd=a, module=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "algorithm.params.max_steps: 4 -> 12" in out
    assert "seed: 1 -> 2" in out
    assert 'name: "run1" -> "run2"' in out
    assert "config: 3 differences" in out  # nothing else differs
    assert "eval/exact_match" in out and "train/steps" in out


def test_diff_json_has_every_difference_and_the_deltas(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    done = run_evsys("diff", str(a), str(b), "--json", cwd=a, module=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["config"]["changed"] == {
        "algorithm.params.max_steps": {"a": 4, "b": 12},
        "name": {"a": "run1", "b": "run2"},
        "seed": {"a": 1, "b": 2},
    }
    assert report["same_config"] is False
    record_a, record_b = load_record(a), load_record(b)
    for name, entry in report["metrics"].items():
        assert entry["a"] == record_a["metrics"][name]
        assert entry["b"] == record_b["metrics"][name]
        assert entry["delta"] == pytest.approx(entry["b"] - entry["a"])
    assert report["metrics"]["train/steps"]["delta"] == 8
    assert report["a"]["config_hash"] == record_a["config_hash"]


def test_a_run_compared_with_itself_is_identical(two_runs: tuple[Path, Path]) -> None:
    a, _ = two_runs
    done = run_evsys("diff", str(a), str(a), cwd=a, module=False)
    assert done.returncode == 0 and "config: identical" in done.stdout


def test_added_removed_and_list_items_are_dotted_keys() -> None:
    a = {"config": {"x": {"y": 1, "gone": True}, "t": [{"kind": "a"}], "e": []}, "metrics": {}}
    b = {
        "config": {"x": {"y": 1.5, "new": None}, "t": [{"kind": "b"}, {"kind": "c"}], "e": []},
        "metrics": {"m": 0.5},
    }
    result = diff_runs(a, b)
    assert result.changed == {"x.y": (1, 1.5), "t[0].kind": ("a", "b")}
    assert result.added == {"x.new": None, "t[1].kind": "c"}
    assert result.removed == {"x.gone": True}
    assert result.metrics == {"m": (None, 0.5, None)}  # only in b: no delta
    assert flatten({"e": [], "d": {}}) == {"e": [], "d": {}}


def test_true_and_one_differ() -> None:
    result = diff_runs({"config": {"f": True}}, {"config": {"f": 1}})
    assert result.changed == {"f": (True, 1)}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{broken", "run_result.json:1: invalid JSON"),
        ('["not", "a", "record"]', "not a run record"),
        ('{"config": {}, "metrics": [1]}', "'metrics' is not an object"),
    ],
)
def test_missing_or_broken_records_exit_2_naming_the_file(
    workdir: Path, content: str | None, message: str
) -> None:
    good = workdir / "good"
    good.mkdir()
    (good / "run_result.json").write_text('{"config": {"seed": 1}, "metrics": {}}')
    bad = workdir / "bad"
    bad.mkdir()
    target = bad / "run_result.json"
    if content is not None:
        target.write_text(content)
    done = run_evsys("diff", str(good), str(target), cwd=workdir, module=False)
    assert done.returncode == 2
    assert message in done.stderr and str(bad) in done.stderr
    assert "Traceback" not in done.stderr


def test_a_directory_without_a_record_is_named(workdir: Path) -> None:
    (workdir / "empty").mkdir()
    done = run_evsys("diff", "empty", "empty", cwd=workdir, module=False)
    assert done.returncode == 2
    assert "empty has no run_result.json" in done.stderr
