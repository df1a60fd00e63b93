"""The main path as a newcomer walks it: migrate a reference file and run the command evsys
prints, put ``--multirun`` wherever, name an output directory that cannot be written, and see a
sweep's failed arms exit with one code whichever sweeper ran them, also when that sweeper
crashes (its dashboard experiment then ends ``failed``)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_evsys
from hypothesis import given, settings
from hypothesis import strategies as st

from evsys.cli.command_line import hydra_argv, parse_with_overrides
from evsys.output_dirs import dir_problems

EXAMPLES = REPO / "tests" / "reference_examples"
FAILING_ARMS = [
    "backend.params.fail_at_step=1",
    "algorithm.params.max_steps=3",
    "+metadata.success_metric=eval/exact_match",
    "hydra.sweep.dir=sweep",
]
LEARNING_RATES = "algorithm.params.learning_rate=tag(log, interval(1e-5, 1e-3))"
SWEEPERS = {
    "evsys": ["seed=1,2"],
    "basic": ["hydra/sweeper=basic", "seed=1,2"],
    "evolve": [
        "hydra/sweeper=evolve",
        LEARNING_RATES,
        "hydra.sweeper.generations=1",
        "hydra.sweeper.population=2",
    ],
    "optuna": [
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.direction=maximize",
        "algorithm.params.learning_rate=interval(1e-5,1e-3)",
    ],
}


def records(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/run_result.json")}


# -- evsys migrate, then the command it prints ---------------------------------------------------


@pytest.mark.parametrize("example", ["minimal", "matrix"])
def test_the_command_migrate_prints_runs_in_a_fresh_directory(tmp_path: Path, example: str) -> None:
    project, cache = tmp_path / "project", tmp_path / "cache"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.jsonl").write_bytes(
        (REPO / "data" / "tool_selection" / "train.jsonl").read_bytes()
    )
    # A newcomer's shell: the default primary config, a cache that the migrate fills first.
    env = {k: v for k, v in os.environ.items() if k != "EVSYS_CONFIG_NAME"}
    env.update(EVSYS_CACHE_DIR=str(cache), PYTHONPATH=str(REPO), COLUMNS="200")

    def shell(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=project, env=env, capture_output=True, text=True, timeout=300
        )

    migrated = shell(
        [sys.executable, "-m", "evsys.cli", "migrate", str(EXAMPLES / f"{example}.yaml")]
    )
    assert migrated.returncode == 0, migrated.stderr
    assert not (project / "outputs").exists()
    printed = migrated.stdout.split("run it with: ", 1)[1].splitlines()[0]
    argv = shlex.split(printed)
    assert argv[:3] == ["python", "-m", "evsys"]
    done = shell([sys.executable, *argv[1:]])  # verbatim, with this test's interpreter
    assert done.returncode == 0, done.stdout + done.stderr
    found = [json.loads(p.read_text()) for p in (project / "outputs").rglob("run_result.json")]
    assert found and {record["status"] for record in found} == {"completed"}
    assert len(found) == (6 if example == "matrix" else 1)


# -- Hydra's flags anywhere on the line ---------------------------------------------------------

OVERRIDE = st.from_regex(r"[a-z][a-z_.]{0,8}=[a-z0-9,._]{0,6}", fullmatch=True)
FLAG = st.sampled_from(
    [
        ["-m"],
        ["--multirun"],
        ["--resolve"],
        ["-cn", "base"],
        ["--config-name=base"],
        ["--cfg", "job"],
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(OVERRIDE.map(lambda o: [o]), FLAG), max_size=8))
def test_hydra_reads_the_line_as_if_flags_came_first(pieces: list[list[str]]) -> None:
    from hydra._internal.utils import get_args_parser

    argv = [token for piece in pieces for token in piece]
    parser = get_args_parser()
    # parse_intermixed_args is argparse's own reading of flags among positionals
    assert vars(parser.parse_args(hydra_argv(argv))) == vars(parser.parse_intermixed_args(argv))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(OVERRIDE, st.sampled_from(["-m", "--multirun", "--json"])), max_size=8))
def test_evsys_commands_gather_overrides_from_anywhere(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("-m", "--multirun", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parse_with_overrides(parser, argv)
    assert args.overrides == [token for token in argv if not token.startswith("-")]
    assert args.multirun == any(token in ("-m", "--multirun") for token in argv)
    assert args.json == ("--json" in argv)


@pytest.mark.parametrize("flag", ["--multirun", "-m"])
def test_multirun_after_the_overrides_sweeps(workdir: Path, flag: str) -> None:
    line = ["algorithm.params.max_steps=2", flag, "seed=1,2", "hydra.sweep.dir=sweep"]
    done = run_evsys(*line, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert sorted(records(workdir / "sweep")) == ["seed1", "seed2"]
    planned = run_evsys("plan", "seed=1,2", flag, "algorithm.params.max_steps=2", "--json",
                        cwd=workdir, module=False)  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    arms = json.loads(planned.stdout)["arms"]
    assert [a["name"] for a in arms] == ["seed1", "seed2"]
    assert all("algorithm.params.max_steps=2" in a["overrides"] for a in arms)


# -- an output directory that cannot be written --------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["plan", "seed=1,2", "hydra.sweep.dir=/proc/evsys/sweep"],
        ["validate", "hydra.run.dir=/proc/evsys"],
        ["run", "hydra.run.dir=/proc/evsys"],
        ["run", "--multirun", "seed=1,2", "hydra.sweep.dir=/sys/evsys"],
    ],
    ids=["plan", "validate", "run", "multirun"],
)
def test_an_output_directory_that_cannot_be_made_is_refused(
    workdir: Path, command: list[str]
) -> None:
    done = run_evsys(*command, cwd=workdir, module=False)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "cannot write the output directory" in output and "Traceback" not in output
    assert list(workdir.iterdir()) == []  # nothing written, not even the check's own folder


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(["/proc", "/sys"]),
    # "." and ".." lead out of the folder (`/proc/../..` is `/`, which takes directories)
    st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True).filter(lambda n: n not in {".", ".."}),
)
def test_no_directory_under_a_folder_that_takes_none(root: str, name: str) -> None:
    text = f"{root}/{name}/{name}"
    problems = dir_problems("hydra.sweep.dir", text)
    assert problems and problems[0].path == "hydra.sweep.dir" and problems[0].value == text


def test_a_writable_directory_passes_and_keeps_nothing(tmp_path: Path) -> None:
    assert dir_problems("hydra.run.dir", str(tmp_path / "a" / "b")) == []
    assert list(tmp_path.iterdir()) == []


# -- failed arms: one exit code whichever sweeper ran them ---------------------------------------


@pytest.mark.parametrize("sweeper", sorted(SWEEPERS))
def test_failed_arms_exit_1_in_every_sweeper(workdir: Path, sweeper: str) -> None:
    pytest.importorskip("optuna", reason="pip install 'evsys[evolve]'")
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'evsys[dev]'")
    done = run_evsys("--multirun", *SWEEPERS[sweeper], *FAILING_ARMS, cwd=workdir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    arms = records(workdir / "sweep")
    assert len(arms) == 2 and {r["status"] for r in arms.values()} == {"failed"}
    result = json.loads((workdir / "sweep" / "sweep_result.json").read_text())
    assert sorted(result["failed"]) == sorted(arms)


# -- a foreign sweeper that crashes --------------------------------------------------------------


def test_a_sweeper_refusing_its_settings_exits_2_and_leaves_nothing(workdir: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'evsys[dev]'")
    line = [*SWEEPERS["optuna"], "hydra.sweeper.storage=nonsense://", *FAILING_ARMS[1:]]
    done = run_evsys("--multirun", *line, cwd=workdir)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "no arm ran" in done.stderr
    assert list(workdir.iterdir()) == []


@pytest.fixture
def dashboard_process(tmp_path: Path):
    pytest.importorskip("fastapi")
    from tests.dashboard_process import ServiceProcess, new_key

    db_url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    (tmp_path / "store").mkdir()
    with ServiceProcess(db_url, tmp_path / "store") as service:
        yield service, new_key(db_url)


def dashboard_experiment(service, key: str, sweep: Path, reader: Path) -> dict:
    from evsys.tracking.client import DashboardClient

    experiment_id = json.loads((sweep / "dashboard_experiment.json").read_text())["experiment_id"]
    with DashboardClient(service.url, key, log_dir=reader) as client:
        return client.get_experiment(experiment_id)


@pytest.mark.parametrize(
    ("case", "lines", "code"),
    [
        ("every trial failed", ["backend.params.fail_at_step=1"], 1),
        ("a setting it refuses", ["hydra.sweeper.storage=nonsense://"], 2),
    ],
    ids=["arms-failed", "bad-setting"],
)
def test_a_crashing_foreign_sweeper_ends_its_experiment_failed(
    dashboard_process, workdir: Path, case: str, lines: list[str], code: int
) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'evsys[dev]'")
    service, key = dashboard_process
    env = {"EVSYS_API_URL": service.url, "EVSYS_API_KEY": key}
    optuna = [*SWEEPERS["optuna"], "log_store=jsonl_dashboard", *lines]
    done = run_evsys("--multirun", *optuna, *FAILING_ARMS[1:], cwd=workdir, env=env)
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, case
    (stopped,) = [line for line in done.stderr.splitlines() if "stopped:" in line]
    assert stopped.startswith("evsys: the sweeper (") and "OptunaSweeper" in stopped
    experiment = dashboard_experiment(service, key, workdir / "sweep", workdir / "reader")
    assert experiment["status"] == "failed"
    if code == 1:  # the arms that ran are aggregated, on disk and on the experiment
        result = json.loads((workdir / "sweep" / "sweep_result.json").read_text())
        assert sorted(result["failed"]) == ["0", "1"]
        assert [arm["name"] for arm in experiment["sweep_plan"]["arms"]] == ["0", "1"]
    else:
        assert records(workdir / "sweep") == {}
