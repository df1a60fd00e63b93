"""Every run records the git commit it ran from and, with uncommitted changes, a patch of them that
restores the run's code on a clean checkout of that commit."""

from __future__ import annotations

import filecmp
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import run_evsys, run_results

from evsys.protocols import RunResult
from evsys.run import record
from evsys.run.record import GIT_DIFF, record_git_state, write_run_result


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed repository as the working directory, with an empty git-state cache."""
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "train.py").write_text("LR = 1e-4\n")
    (repo / "weights.bin").write_bytes(bytes(range(256)))
    (repo / ".gitignore").write_text("outputs/\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    monkeypatch.chdir(repo)
    record._git_state.cache_clear()
    yield repo
    record._git_state.cache_clear()


def test_a_clean_tree_records_the_commit_and_no_patch(repo: Path, tmp_path: Path) -> None:
    entry = record_git_state(tmp_path)
    assert entry["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert entry["dirty"] is False and entry["diff"] is None and entry["untracked"] == []
    assert not (tmp_path / GIT_DIFF).exists()


def test_the_patch_restores_staged_unstaged_and_binary_changes(repo: Path, tmp_path: Path) -> None:
    (repo / "src" / "train.py").write_text("LR = 3e-4\n")  # unstaged
    (repo / "src" / "reward.py").write_text("def reward(): return 1\n")
    git(repo, "add", "src/reward.py")  # staged
    (repo / "weights.bin").write_bytes(bytes(reversed(range(256))))  # binary
    (repo / "notes.txt").write_text("scratch\n")  # untracked: listed, not in the patch
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    subdir = repo / "src"  # evsys may run from a subdirectory of the work tree
    entry = record.git_state(subdir)
    assert entry is not None and entry["untracked"] == ["notes.txt"]
    entry = record_git_state(run_dir)
    assert entry["dirty"] is True and entry["diff"] == GIT_DIFF
    assert entry["untracked"] == ["notes.txt"] and entry["n_untracked"] == 1

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", entry["commit"])
    git(clone, "apply", str(run_dir / GIT_DIFF))
    for path in ("src/train.py", "src/reward.py", "weights.bin"):
        assert filecmp.cmp(repo / path, clone / path, shallow=False), path
    assert not (clone / "notes.txt").exists()


def test_a_repository_without_commits_diffs_against_the_empty_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    monkeypatch.chdir(repo)
    record._git_state.cache_clear()
    entry = record_git_state(tmp_path)
    record._git_state.cache_clear()
    assert entry["commit"] is None and entry["diff"] == GIT_DIFF
    assert "+x = 1" in (tmp_path / GIT_DIFF).read_text()


def test_outside_a_repository_or_without_git_nothing_is_recorded_and_the_run_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    record._git_state.cache_clear()
    assert record_git_state(tmp_path) is None

    record._git_state.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    result = RunResult(run_id="r", status="completed", metrics={"m": 1.0})
    written = write_run_result(
        tmp_path, result, name="r", config={}, overrides=[], started_at=datetime.now(UTC)
    )
    record._git_state.cache_clear()
    assert written["git"] is None and written["status"] == "completed"


def test_a_run_in_a_dirty_repository_saves_the_patch_beside_its_record(repo: Path) -> None:
    (repo / "src" / "train.py").write_text("LR = 3e-4\n")
    done = run_evsys(
        "backend=mock", "model=tiny", "data=arithmetic", "algorithm.params.max_steps=3", cwd=repo
    )
    assert done.returncode == 0, done.stderr
    (run,) = run_results(repo / "outputs")
    assert run["git"]["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert run["git"]["diff"] == GIT_DIFF
    patch = (Path(run["run_dir"]) / GIT_DIFF).read_text()
    assert "+LR = 3e-4" in patch and "outputs/" not in patch
