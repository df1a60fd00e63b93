"""An installed evsys (a wheel, not the checkout) composes and runs from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, run_results


def test_the_wheel_carries_its_config_experiments_and_data(tmp_path: Path) -> None:
    wheels, target, project = tmp_path / "wheels", tmp_path / "site", tmp_path / "project"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(REPO)], check=True)
    (wheel,) = wheels.glob("evsys-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    project.mkdir()
    ui = target / "evsys" / "dashboard" / "ui"  # the web UI serves these from the package
    assert (ui / "templates" / "base.html").is_file() and (ui / "static" / "dashboard.js").is_file()

    # The wheel's evsys comes first on the path; its dependencies come from this environment.
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import evsys.paths as p; print(p.config_dir())"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()) == target / "evsys" / "_bundled" / "conf"
    # The reference's package name ships in the same wheel.
    sdk = subprocess.run(
        [sys.executable, "-c", "import evsys_sdk; print(evsys_sdk.run_experiment.__module__)"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert sdk.returncode == 0, sdk.stderr
    assert (target / "evsys_sdk" / "__init__.py").is_file()

    done = subprocess.run(
        [sys.executable, "-m", "evsys", "experiment=lora_rank", "algorithm.params.max_steps=3"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (record,) = run_results(project / "outputs")
    assert record["status"] == "completed"
    assert "eval/exact_match" in record["metrics"]

    # The dashboard builds its schema from the Alembic migrations that ship inside the package.
    upgraded = subprocess.run(
        [
            sys.executable,
            "-c",
            "from evsys.dashboard.db import make_engine, upgrade; upgrade(make_engine('d.db'))",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert upgraded.returncode == 0, upgraded.stderr


def test_every_dependency_the_install_scripts_install_is_pinned() -> None:
    """A fresh clone installs what the suite passed with: constraints.txt pins every requirement
    of the extras scripts/test and scripts/quickstart install (scripts/lock writes it)."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["dev"], *extras["local"], *extras["tinker"]]
    pinned = {
        canonicalize_name(line.split("==")[0])
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    unpinned = {canonicalize_name(Requirement(r).name) for r in wanted} - pinned
    assert not unpinned, f"run scripts/lock after a green suite: {sorted(unpinned)} are not pinned"
