"""``evsys init-project`` and ``evsys new-experiment``: what they write runs and validates as is.

The scaffolded project is made importable the way ``pip install -e .`` would: its ``src/`` on the
path and a dist-info whose entry points are read from the project's own ``pyproject.toml``, so a
wrong entry point there fails these tests.
"""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, run_evsys, run_results

DAY = "20260105"
EXPERIMENT = f"{DAY}_baseline"


def scaffold(where: Path, name: str = "capital-rl") -> Path:
    done = run_evsys("init-project", name, "--date", DAY, cwd=where, module=False)
    assert done.returncode == 0, done.stderr
    return where / name


def install(project: Path, site: Path) -> dict[str, str]:
    """An editable-style install of ``project`` into ``site``; returns the env that sees it."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    dist_info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "\n".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in names.items())
            for group, names in meta["entry-points"].items()
        )
    )
    path = [str(site), str(project / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in path if p)}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("scaffold")
    project = scaffold(root)
    return project, install(project, root / "site")


def test_the_project_has_the_researcher_layout(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    for folder in ("raw", "fetch", "process", "datasets", "benchmark", "validation"):
        assert (root / "data" / folder).is_dir(), folder
    for path in (
        "pyproject.toml",
        "README.md",
        ".gitignore",
        "conf/data/capitals.yaml",
        f"experiments/{EXPERIMENT}.yaml",
        "src/capital_rl/__init__.py",
        "src/capital_rl/verifiers.py",
        "src/capital_rl/metrics.py",
        "src/capital_rl/transforms.py",
        "data/datasets/capitals/v1/train.jsonl",
        "data/datasets/capitals/v1/metadata.yaml",
        "data/benchmark/capitals/tasks.jsonl",
        "data/validation/capitals/tasks.jsonl",
    ):
        assert (root / path).is_file(), path
    assert not list(root.rglob("*.tmpl")) and "{{" not in (root / "pyproject.toml").read_text()
    experiment = (root / "experiments" / f"{EXPERIMENT}.yaml").read_text()
    assert experiment.startswith("# @package _global_")
    assert "capital_rl.alias_match" in experiment and "hypothesis:" in experiment


def test_its_experiment_runs_on_mock_with_the_project_extensions(
    project: tuple[Path, dict[str, str]],
) -> None:
    root, env = project
    # As a researcher runs it: from the primary config.yaml (whose default experiment trains
    # SmolLM2 locally), not the test suite's base.yaml; the experiment itself picks mock and tiny.
    done = run_evsys(f"experiment={EXPERIMENT}", cwd=root, env={**env, "EVSYS_CONFIG_NAME": ""})
    assert done.returncode == 0, done.stderr + done.stdout
    (record,) = run_results(root / "outputs")
    assert record["status"] == "completed"
    config = record["config"]
    assert config["algorithm"]["params"]["verifier"]["kind"] == "capital_rl.alias_match"
    assert config["data"]["transforms"][0]["kind"] == "capital_rl.dedupe"
    metrics = record["metrics"]
    assert 0.0 <= metrics["eval/capital_rl.alias_accuracy"] <= 1.0
    assert metrics["train/final_reward_mean"] > 0  # the project's verifier rewarded something
    # The eval really went through the project's metric: it accepts aliases, exact match does not.
    assert metrics["eval/capital_rl.alias_accuracy"] >= metrics["eval/exact_match"]


def test_without_the_entry_points_the_extensions_are_unknown(
    project: tuple[Path, dict[str, str]],
) -> None:
    root, _ = project
    # Importable, but not installed: no dist-info declares its entry points.
    env = {"PYTHONPATH": os.pathsep.join([str(root / "src"), str(REPO)])}
    done = run_evsys("validate", f"experiment={EXPERIMENT}", cwd=root, env=env, module=False)
    assert done.returncode == 2
    assert "unknown verifier 'capital_rl.alias_match'" in done.stdout


def test_its_sweep_plans_and_its_extensions_are_listed(
    project: tuple[Path, dict[str, str]],
) -> None:
    root, env = project
    plan = run_evsys("plan", f"experiment={EXPERIMENT}", "--json", cwd=root, env=env, module=False)
    assert plan.returncode == 0, plan.stderr
    assert len(json.loads(plan.stdout)["arms"]) == 4  # 2 learning rates x 2 seeds

    listing = json.loads(run_evsys("list", "--json", cwd=root, env=env, module=False).stdout)
    assert "capital_rl.alias_match" in {e["name"] for e in listing["verifier"]}
    assert "capital_rl.alias_accuracy" in {e["name"] for e in listing["metric"]}
    assert "capital_rl.dedupe" in {e["name"] for e in listing["transform"]}


def test_the_projects_own_tests_pass(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_data_scripts_rebuild_the_shipped_data(tmp_path: Path) -> None:
    root = scaffold(tmp_path)
    shipped = tmp_path / "shipped"
    subprocess.run(["cp", "-r", str(root / "data"), str(shipped)], check=True)
    for script in ("data/fetch/capitals.py", "data/process/capitals.py"):
        subprocess.run([sys.executable, script], cwd=root, check=True, capture_output=True)
    assert (root / "data/raw/capitals/capitals.csv").is_file()
    for path in shipped.rglob("*.*"):
        rebuilt = root / "data" / path.relative_to(shipped)
        assert filecmp.cmp(path, rebuilt, shallow=False), path.relative_to(shipped)


def test_init_project_refuses_to_overwrite_and_bad_names(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    done = run_evsys("init-project", "taken", cwd=tmp_path, module=False)
    assert done.returncode == 2
    assert "already exists and is not an empty directory" in done.stderr
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]

    for bad in ("9lives", "has space", "json"):  # not a name; not a name; hides the stdlib
        done = run_evsys("init-project", bad, cwd=tmp_path, module=False)
        assert done.returncode == 2, bad
        assert "project name" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing half-written

    (tmp_path / "empty").mkdir()  # an empty directory is fine
    assert run_evsys("init-project", "empty", cwd=tmp_path, module=False).returncode == 0
    assert (tmp_path / "empty" / "pyproject.toml").is_file()


# -- new-experiment ---------------------------------------------------------------------------


def test_new_experiment_in_a_project_validates(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    done = run_evsys("new-experiment", "lr-sweep", "--date", DAY, cwd=root, env=env, module=False)
    assert done.returncode == 0, done.stderr
    path = root / "experiments" / f"{DAY}_lr-sweep.yaml"
    text = path.read_text()
    assert text.startswith("# @package _global_")
    for part in ("hypothesis:", "tags:", "success_metric:", "benchmark:", "sweeper:"):
        assert part in text, part
    assert "override /data: capitals" in text  # the project's own option is picked

    checked = run_evsys("validate", f"experiment={DAY}_lr-sweep", cwd=root, env=env, module=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "is valid" in checked.stdout
    plan = run_evsys(
        "plan", f"experiment={DAY}_lr-sweep", "--json", cwd=root, env=env, module=False
    )
    assert plan.returncode == 0 and len(json.loads(plan.stdout)["arms"]) == 6

    again = run_evsys("new-experiment", "lr-sweep", "--date", DAY, cwd=root, module=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert path.read_text() == text


def test_new_experiment_anywhere_uses_evsys_options(workdir: Path) -> None:
    done = run_evsys("new-experiment", "first_try", cwd=workdir, module=False)
    assert done.returncode == 0, done.stderr
    (path,) = (workdir / "experiments").glob("*_first_try.yaml")
    assert path.name[:8].isdigit()
    checked = run_evsys("validate", f"experiment={path.stem}", cwd=workdir, module=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("slug", ["Bad Slug", "_leading", "x/y", "a" * 65])
def test_new_experiment_refuses_bad_slugs(workdir: Path, slug: str) -> None:
    done = run_evsys("new-experiment", slug, cwd=workdir, module=False)
    assert done.returncode == 2
    assert "experiment slug" in done.stderr
    assert not (workdir / "experiments").exists()


def test_new_experiment_offers_the_registered_recipes(
    tmp_path: Path, clean_registries: None
) -> None:
    from evsys.registry import ALGORITHMS, register_algorithm
    from evsys.scaffold import experiment_text

    @register_algorithm("my_recipe")
    class MyRecipe:
        def train(self, ctx: object) -> None: ...

    text = experiment_text(tmp_path, "x", "20260105_x")
    line = next(line for line in text.splitlines() if "override /algorithm" in line)
    offered = line.split("#", 1)[1].split(", ")
    assert [name.strip() for name in offered] == ALGORITHMS.names()
    assert "my_recipe" in offered and "dpo" not in text
