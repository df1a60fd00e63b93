"""evsys on the dashboard: sweeps as experiments, arms as runs, data by reference, the CLI.

Everything runs against the real service (``tests/dashboard_server.py``: uvicorn on 127.0.0.1,
over SQLite and PostgreSQL) and the real client; the fault test runs the service in a process of
its own, to kill it mid-sweep and start it again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, run_evsys
from tests.dashboard_process import ServiceProcess, new_key

pytest.importorskip("fastapi")

SWEEP = [
    "--multirun",
    "backend=mock",
    "log_store=jsonl_dashboard",
    "seed=1,2",
    "metadata.success_metric=eval/exact_match",
    "metadata.hypothesis='seeds barely matter'",
    "metadata.tags=[wiring]",
    "metadata.project_goal_id=goal-7",
    "+parent_experiment_id=parent-1",
]


# The wiring does not depend on the database: the sweep runs on both, the rest on SQLite.
sqlite_only = pytest.mark.parametrize("dashboard", ["sqlite"], indirect=True)


@dataclass
class Project:
    """A project of the test's dashboard, and the environment that points evsys at it."""

    url: str
    key: str
    root: Path

    def env(self, **more: str) -> dict[str, str]:
        return {"EVSYS_API_URL": self.url, "EVSYS_API_KEY": self.key, **more}

    def client(self):
        from evsys.tracking.client import DashboardClient

        return DashboardClient(self.url, self.key, log_dir=self.root / "reader")

    def read(self, path: str) -> dict:
        """``GET /api/dashboard/api<path>`` with the key (reads the client has no method for)."""
        request = urllib.request.Request(
            f"{self.url}/api/dashboard/api{path}", headers={"Authorization": f"Bearer {self.key}"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())


@pytest.fixture
def project(dashboard, tmp_path: Path) -> Project:
    return Project(dashboard.url, dashboard.new_project().key, tmp_path / "reader")


@pytest.fixture
def project_env(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    for name, value in project.env().items():
        monkeypatch.setenv(name, value)
    return project


@pytest.fixture
def killable(tmp_path: Path) -> Iterator[tuple[ServiceProcess, Project]]:
    """The service in a process of its own (SQLite), to kill mid-sweep and start again."""
    db_url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    (tmp_path / "store").mkdir()
    with ServiceProcess(db_url, tmp_path / "store") as service:
        yield service, Project(service.url, new_key(db_url), tmp_path / "reader")


def logged_steps(run_dir: Path) -> dict[tuple[int, str], float]:
    """``{(step, metric): value}`` of a run's metrics.jsonl: what its dashboard run must hold."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {
        (line["step"], key): value
        for line in map(json.loads, lines)
        for key, value in line.items()
        if key not in ("step", "time")
    }


def record_group(record: dict) -> str:
    from evsys.sweep.aggregate import group_id

    return group_id(record["config"])


def evsys_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_evsys(*args, cwd=cwd, module=False, env=env)


# -- a sweep is one experiment ---------------------------------------------------------------


def test_a_mock_sweep_is_one_experiment_with_its_plan_arms_steps_and_conclusion(
    project: Project, workdir: Path
) -> None:
    done = run_evsys(*SWEEP, "hydra.sweep.dir=sweep", cwd=workdir, env=project.env())
    assert done.returncode == 0, done.stderr

    sweep = workdir / "sweep"
    local = json.loads((sweep / "sweep_result.json").read_text())
    experiment_id = json.loads((sweep / "dashboard_experiment.json").read_text())["experiment_id"]
    with project.client() as client:
        (listed,) = client.list_experiments(tag="wiring")
        experiment = client.get_experiment(experiment_id)
        runs = {run["name"]: run for run in client.list_runs(experiment_id=experiment_id)}
        steps = {name: client.get_run_steps(run["id"]) for name, run in runs.items()}
        full = {name: client.get_run(run["id"]) for name, run in runs.items()}

    assert listed["id"] == experiment_id
    assert experiment["hypothesis"] == "seeds barely matter"
    assert experiment["success_metric"] == "eval/exact_match"
    assert experiment["direction"] == "maximize"
    assert experiment["project_goal_id"] == "goal-7"
    assert experiment["parent_experiment_id"] == "parent-1"
    assert [arm["name"] for arm in experiment["sweep_plan"]["arms"]] == ["seed1", "seed2"]
    assert experiment["status"] == "completed"
    assert experiment["conclusion"] == local["conclusion"]
    assert experiment["best_score"] == pytest.approx(local["best_value"])
    assert experiment["best_run_id"] == runs[local["best_arm"]]["id"]

    assert sorted(runs) == ["seed1", "seed2"]
    for name, run in full.items():
        record = json.loads((sweep / name / "run_result.json").read_text())
        assert run["status"] == "completed"
        assert run["config_hash"] == record["config_hash"]
        assert run["seed"] == record["config"]["seed"]
        assert run["config"]["seed"] == record["config"]["seed"]
        assert run["overrides"] == record["overrides"]
        assert run["group_id"] == record_group(record)
        assert (run["git"] or {}).get("commit") == (record["git"] or {}).get("commit")
        assert run["summary"]["eval/exact_match"] == pytest.approx(
            record["metrics"]["eval/exact_match"]
        )
        assert run["data_lineage"] == record["data_lineage"] != []
        # every step metric the arm logged, and nothing else
        stored = {(s["step"], s["name"]): s["value"] for s in steps[name]}
        assert len(stored) == len(steps[name])
        assert stored == pytest.approx(logged_steps(sweep / name))
        # its eval scores as an eval run, with the predictions eval wrote
        (evaluated,) = project.read(f"/runs/{run['id']}/evals")["evals"]
        assert evaluated["name"] == "eval" and evaluated["metrics"]["exact_match"] == (
            pytest.approx(record["metrics"]["eval/exact_match"])
        )
        predictions = project.read(f"/runs/{run['id']}/predictions")["predictions"]
        written = (sweep / name / "predictions.jsonl").read_text().splitlines()
        assert len(predictions) == len(written) > 0
        assert predictions[0]["completion"] == json.loads(written[0])["prediction"]
        # each arm's mirror is in its own directory
        assert list((sweep / name / "dashboard").glob("*.writes.jsonl"))


@sqlite_only
def test_an_evolve_sweep_is_one_experiment_with_a_record_per_generation(
    project: Project, workdir: Path
) -> None:
    pytest.importorskip("optuna", reason="pip install 'evsys[evolve]'")
    done = run_evsys(
        "--multirun",
        "hydra/sweeper=evolve",
        "log_store=jsonl_dashboard",
        "+backend.params.landscape={}",
        "metadata.success_metric=eval/exact_match",
        "algorithm.params.max_steps=5",
        "algorithm.params.learning_rate=tag(log, interval(1e-5, 1e-2))",
        "hydra.sweeper.generations=2",
        "hydra.sweeper.population=2",
        "hydra.sweep.dir=evo",
        cwd=workdir,
        env=project.env(),
    )
    assert done.returncode == 0, done.stderr
    sweep = workdir / "evo"
    tree = json.loads((sweep / "lineage.json").read_text())
    experiment_id = json.loads((sweep / "dashboard_experiment.json").read_text())["experiment_id"]
    with project.client() as client:
        experiment = client.get_experiment(experiment_id)
        runs = {run["name"]: run["id"] for run in client.list_runs(experiment_id=experiment_id)}

    assert sorted(runs) == sorted(arm["name"] for arm in tree["arms"])
    assert experiment["status"] == "completed" and experiment["sweep_plan"]["sweeper"] == "evolve"
    generations = sorted(experiment["generations"], key=lambda g: g["index"])
    assert [(g["index"], g["status"], g["proposer"]) for g in generations] == [
        (0, "completed", "optuna"),
        (1, "completed", "optuna"),
    ]
    for generation in generations:
        names = [a["name"] for a in tree["arms"] if a["generation"] == generation["index"]]
        assert sorted(generation["summary"]["arms"]) == sorted(runs[name] for name in names)
    assert generations[1]["summary"]["parent_runs"]  # generation 1 grew from generation 0
    best_arm = json.loads((sweep / "sweep_result.json").read_text())["best_arm"]
    assert experiment["best_run_id"] == runs[best_arm]


# Arms proposed by another sweeper: the real hydra-optuna-sweeper, 3 trials on the mock backend.
OPTUNA_SWEEP = [
    "--multirun",
    "hydra/sweeper=optuna",
    "hydra/sweeper/sampler=random",
    "hydra.sweeper.sampler.seed=7",
    "hydra.sweeper.n_trials=3",
    "hydra.sweeper.direction=maximize",
    "backend=mock",
    "log_store=jsonl_dashboard",
    "metadata.success_metric=eval/exact_match",
    "metadata.tags=[optuna]",
    "algorithm.params.learning_rate=interval(1e-6,1e-4)",
    "algorithm.params.max_steps=6",
]


@sqlite_only
def test_an_optuna_sweep_is_one_experiment_with_its_trials_as_runs(
    project: Project, workdir: Path
) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'evsys[dev]'")
    from evsys.log_stores.dashboard import arm_run_id

    experiment_ids = []
    for study in ("study1", "study2"):  # two sweeps: two experiments
        done = run_evsys(*OPTUNA_SWEEP, f"hydra.sweep.dir={study}", cwd=workdir, env=project.env())
        assert done.returncode == 0, done.stderr
        recorded = json.loads((workdir / study / "dashboard_experiment.json").read_text())
        experiment_ids.append(recorded["experiment_id"])

    with project.client() as client:
        listed = client.list_experiments()
        experiments = {i: client.get_experiment(i) for i in experiment_ids}
        runs = {i: client.list_runs(experiment_id=i) for i in experiment_ids}
        full = {run["id"]: client.get_run(run["id"]) for found in runs.values() for run in found}

    # no trial made an experiment of its own
    assert (
        sorted(e["id"] for e in listed) == sorted(experiment_ids) and len(set(experiment_ids)) == 2
    )
    for study, experiment_id in zip(("study1", "study2"), experiment_ids, strict=True):
        sweep = workdir / study
        local = json.loads((sweep / "sweep_result.json").read_text())
        experiment = experiments[experiment_id]
        by_name = {run["name"]: run for run in runs[experiment_id]}
        assert sorted(by_name) == ["0", "1", "2"]  # every trial is a run of it
        for name, run in by_name.items():
            record = json.loads((sweep / name / "run_result.json").read_text())
            stored = full[run["id"]]
            assert run["id"] == arm_run_id(experiment_id, name)  # what a retried trial reuses
            assert stored["status"] == "completed"
            assert stored["overrides"] == record["overrides"]
            assert stored["summary"]["eval/exact_match"] == pytest.approx(
                record["metrics"]["eval/exact_match"]
            )
        assert experiment["tags"] == ["optuna"]
        assert experiment["success_metric"] == "eval/exact_match"
        assert experiment["status"] == "completed"
        assert experiment["best_run_id"] == by_name[local["best_arm"]]["id"]
        assert experiment["best_score"] == pytest.approx(local["best_value"])
        assert experiment["conclusion"] == local["conclusion"] != ""
        plan = experiment["sweep_plan"]
        assert plan["sweeper"].endswith("OptunaSweeper")
        assert [arm["name"] for arm in plan["arms"]] == ["0", "1", "2"]  # as the sweeper proposed


@sqlite_only
@pytest.mark.parametrize("sweep", [SWEEP, OPTUNA_SWEEP], ids=["evsys", "optuna"])
def test_a_rejected_key_stops_the_sweep_before_any_arm(
    project: Project, workdir: Path, sweep: list[str]
) -> None:
    if "hydra/sweeper=optuna" in sweep:
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'evsys[dev]'")
    env = project.env(EVSYS_API_KEY="evsys_wrong")
    done = run_evsys(*sweep, "hydra.sweep.dir=sweep", cwd=workdir, env=env)
    assert done.returncode == 2
    assert "refused the key" in done.stderr and "Traceback" not in done.stderr
    assert not list((workdir / "sweep").glob("*/.hydra"))  # no arm started


@sqlite_only
def test_a_resumed_basic_sweep_goes_on_in_the_same_experiment_and_runs(
    project: Project, workdir: Path
) -> None:
    args = ["--multirun", "hydra/sweeper=basic", "backend=mock", "log_store=jsonl_dashboard"]
    done = run_evsys(*args, "seed=1,2", "hydra.sweep.dir=grid", cwd=workdir, env=project.env())
    assert done.returncode == 0, done.stderr
    sweep = workdir / "grid"
    kept = (sweep / "0" / "run_result.json").read_bytes()
    (sweep / "1" / "run_result.json").unlink()  # as if the arm had died: resume re-runs it
    again = evsys_cli("resume", "grid", cwd=workdir, env=project.env())
    assert again.returncode == 0, again.stderr
    assert (sweep / "0" / "run_result.json").read_bytes() == kept  # completed: not run again

    experiment_id = json.loads((sweep / "dashboard_experiment.json").read_text())["experiment_id"]
    with project.client() as client:
        (experiment,) = client.list_experiments()
        runs = {r["name"]: r for r in client.list_runs(experiment_id=experiment_id)}
        steps = client.get_run_steps(runs["1"]["id"])
    assert experiment["id"] == experiment_id and experiment["status"] == "completed"
    assert sorted(runs) == ["0", "1"]
    stored = {(s["step"], s["name"]): s["value"] for s in steps}
    assert len(stored) == len(steps)  # the second attempt replaced the first's steps
    assert stored == pytest.approx(logged_steps(sweep / "1"))


@sqlite_only
def test_the_key_is_never_written_to_any_output(project: Project, workdir: Path) -> None:
    done = run_evsys(
        "backend=mock", "log_store=dashboard", "hydra.run.dir=run", cwd=workdir, env=project.env()
    )
    assert done.returncode == 0, done.stderr
    leaked = [
        path
        for path in (workdir / "run").rglob("*")
        if path.is_file() and project.key.encode() in path.read_bytes()
    ]
    assert leaked == []
    assert project.key not in done.stdout + done.stderr


@sqlite_only
def test_experiment_api_with_a_store_records_a_single_run_as_an_experiment(
    project: Project, workdir: Path
) -> None:
    import evsys

    client = project.client()
    result = evsys.Experiment(
        ["backend=mock", "metadata.success_metric=eval/exact_match", "name=solo"], store=client
    ).run(workdir / "solo")
    client.flush(timeout=30)
    (experiment,) = [e for e in client.list_experiments() if e["name"] == "solo"]
    (run,) = client.list_runs(experiment_id=experiment["id"])
    client.close()
    assert run["status"] == "completed"
    assert experiment["best_run_id"] == run["id"]
    assert experiment["best_score"] == pytest.approx(result.best_arm.metrics["eval/exact_match"])


@sqlite_only
def test_a_resumed_sweep_goes_on_in_the_same_experiment_and_runs(
    project: Project, workdir: Path
) -> None:
    import evsys

    sweep = workdir / "sweep"
    client = project.client()
    evsys.Experiment(["backend=mock", "seed=1,2"], multirun=True, store=client).run(sweep)
    (sweep / "seed2" / "run_result.json").unlink()  # as if the arm had died: resume re-runs it
    evsys.Experiment(["backend=mock", "seed=1,2"], multirun=True, store=client).run(sweep)
    client.close()
    with project.client() as reader:
        (experiment,) = reader.list_experiments()
        runs = reader.list_runs(experiment_id=experiment["id"])
        steps = reader.get_run_steps(next(r["id"] for r in runs if r["name"] == "seed2"))
    assert sorted(r["name"] for r in runs) == ["seed1", "seed2"]
    assert experiment["status"] == "completed"
    stored = {(s["step"], s["name"]): s["value"] for s in steps}
    assert len(stored) == len(steps)  # the second attempt replaced the first's steps
    assert stored == pytest.approx(logged_steps(sweep / "seed2"))


def test_store_none_keeps_runs_local(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import evsys

    monkeypatch.setenv("EVSYS_API_URL", "http://127.0.0.1:9")  # nothing may be contacted
    evsys.Experiment(["backend=mock"], store=None).run(workdir / "local")
    assert not (workdir / "local" / "dashboard").exists()


def test_experiment_store_settings_are_checked_when_given(workdir: Path) -> None:
    import evsys

    with pytest.raises(evsys.ConfigError) as caught:
        evsys.Experiment(["backend=mock"], store={"api_ulr": "http://127.0.0.1:9"})
    assert [p.path for p in caught.value.problems] == ["store.api_ulr"]


# -- data by reference ------------------------------------------------------------------------


@sqlite_only
def test_a_dataset_uploaded_is_used_by_name_then_read_offline_from_the_cache(
    project_env: Project, workdir: Path
) -> None:
    rows = REPO / "data" / "tool_selection" / "train.jsonl"
    done = evsys_cli("dataset", "upload", "toolsel", str(rows), cwd=workdir, env={})
    assert done.returncode == 0, done.stderr
    dataset_id = done.stdout.split("id ")[-1].strip()
    assert "version 1" in done.stdout

    import evsys

    evsys.Experiment(["backend=mock", "data.dataset_name=toolsel"]).run(workdir / "first")
    first = json.loads((workdir / "first" / "run_result.json").read_text())
    cached = workdir / ".evsys" / "datasets" / dataset_id / "rows.jsonl"
    assert cached.read_bytes() == rows.read_bytes()
    dataset, held_out = [e for e in first["data_lineage"] if e["role"] == "data"]
    assert dataset["id"] == dataset_id and dataset["name"] == "toolsel" and dataset["version"] == 1
    assert held_out["path"].endswith("test.jsonl") and len(held_out["sha256"]) == 64
    assert first["status"] == "completed"

    offline = {"EVSYS_API_URL": "http://127.0.0.1:9", "EVSYS_API_KEY": "", "EVSYS_OFFLINE": "1"}
    second = run_evsys(  # from the cache: there is no service to ask
        "backend=mock",
        "data.dataset_name=toolsel",
        "hydra.run.dir=second",
        cwd=workdir,
        env=offline,
    )
    assert second.returncode == 0, second.stderr
    record = json.loads((workdir / "second" / "run_result.json").read_text())
    assert record["metrics"] == pytest.approx(first["metrics"])


@sqlite_only
def test_an_unknown_dataset_id_stops_the_sweep_before_any_arm(
    project: Project, workdir: Path
) -> None:
    done = run_evsys(
        "--multirun",
        "backend=mock",
        "seed=1,2",
        "data.dataset_id=0123456789abcdef",
        "hydra.sweep.dir=sweep",
        cwd=workdir,
        env=project.env(),
    )
    assert done.returncode == 2
    assert "data.dataset_id" in done.stderr and "0123456789abcdef" in done.stderr
    assert "no such dataset" in done.stderr and "Traceback" not in done.stderr
    assert not (workdir / "sweep").exists()


@sqlite_only
def test_a_benchmark_directory_uploaded_resolves_by_id(project_env: Project, workdir: Path) -> None:
    bench = workdir / "bench"
    bench.mkdir()
    (bench / "tasks.jsonl").write_text(
        (REPO / "data" / "tool_selection" / "test.jsonl").read_text()
    )
    (bench / "metadata.yaml").write_text("name: toolbench\n")
    first = evsys_cli("benchmark", "upload", "toolbench", str(bench), cwd=workdir, env={})
    again = evsys_cli("benchmark", "upload", "toolbench", str(bench), cwd=workdir, env={})
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout  # the same bytes are the same version
    benchmark_id = first.stdout.split("id ")[-1].strip()

    import evsys

    client = project_env.client()
    overrides = ["backend=mock", f"metadata.benchmark=[{{id: {benchmark_id}}}]"]
    result = evsys.Experiment(overrides, store=client).run(workdir / "scored")
    client.close()
    (arm,) = result.arms
    assert arm.status == "completed", arm
    score = arm.metrics["test/toolbench/exact_match"]
    with project_env.client() as reader:
        (experiment,) = reader.list_experiments()
        (run,) = reader.list_runs(experiment_id=experiment["id"])
    (record,) = project_env.read(f"/runs/{run['id']}/benchmarks")["benchmarks"]
    assert record["benchmark_id"] == benchmark_id
    assert record["metrics"]["exact_match"] == pytest.approx(score)
    lineage = json.loads((workdir / "scored" / "run_result.json").read_text())["data_lineage"]
    assert {"id": benchmark_id, "version": 1}.items() <= lineage[-1].items()
    cached = workdir / ".evsys" / "benchmarks" / benchmark_id
    assert (cached / "tasks.jsonl").read_bytes() == (bench / "tasks.jsonl").read_bytes()


def test_a_benchmark_id_without_a_dashboard_is_refused_with_the_reason(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVSYS_API_KEY", raising=False)
    done = run_evsys("backend=mock", "metadata.benchmark=[{id: b-1}]", cwd=workdir)
    assert done.returncode == 2
    assert "metadata.benchmark[0].id" in done.stderr and "EVSYS_API_KEY" in done.stderr


def test_a_hostile_reference_never_names_a_path_outside_the_cache(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evsys.data.references import UnresolvedReference, resolve, why_unresolvable

    monkeypatch.delenv("EVSYS_API_KEY", raising=False)
    (workdir / "outside").mkdir()
    (workdir / "outside" / "reference.json").write_text('{"id": "x", "sha256": "0"}')
    for hostile in ("../outside", "/etc", "a/../../outside"):
        assert why_unresolvable("datasets", hostile) is not None
        with pytest.raises(UnresolvedReference):
            resolve("datasets", id=hostile)


@sqlite_only
def test_upload_refuses_a_link_in_a_benchmark_and_a_bad_name(
    project_env: Project, workdir: Path
) -> None:
    bench = workdir / "bench"
    bench.mkdir()
    (bench / "tasks.jsonl").write_text("{}\n")
    (bench / "escape").symlink_to("/etc/passwd")
    linked = evsys_cli("benchmark", "upload", "b", str(bench), cwd=workdir, env={})
    assert linked.returncode == 2 and "escape" in linked.stderr
    named = evsys_cli("dataset", "upload", "../x", str(bench / "tasks.jsonl"), cwd=workdir, env={})
    assert named.returncode == 2 and "name" in named.stderr
    assert len((linked.stderr + named.stderr).strip().splitlines()) == 2


# -- reading without a browser ----------------------------------------------------------------


@sqlite_only
def test_experiments_and_runs_list_what_the_dashboard_holds(
    project: Project, workdir: Path
) -> None:
    done = run_evsys(*SWEEP, "hydra.sweep.dir=sweep", cwd=workdir, env=project.env())
    assert done.returncode == 0, done.stderr
    listed = evsys_cli("experiments", "--tag", "wiring", "--json", cwd=workdir, env=project.env())
    (experiment,) = json.loads(listed.stdout)
    runs = evsys_cli(
        "runs", "--experiment", experiment["id"], "--json", cwd=workdir, env=project.env()
    )
    assert sorted(r["name"] for r in json.loads(runs.stdout)) == ["seed1", "seed2"]
    table = evsys_cli("experiments", cwd=workdir, env=project.env())
    assert experiment["id"] in table.stdout and "completed" in table.stdout
    refused = evsys_cli("runs", cwd=workdir, env=project.env(EVSYS_API_KEY="evsys_nope"))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_service_killed_mid_sweep_then_sync_gives_exactly_the_local_files(
    killable: tuple[ServiceProcess, Project], workdir: Path
) -> None:
    """The service dies while the sweep runs; after a restart, `evsys sync` of the sweep
    directory leaves the dashboard holding every step of every arm, once."""
    service, project = killable
    env = project.env()
    sweep = subprocess.Popen(
        [
            *(sys.executable, "-m", "evsys", *SWEEP, "seed=1,2,3", "hydra.sweep.dir=sweep"),
            "+log_store.params.stores.1.params.close_timeout_s=1",  # the service is down
        ],
        cwd=workdir,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(workdir.glob("sweep/seed*/dashboard/*.writes.jsonl")):
        assert time.monotonic() < deadline and sweep.poll() is None
        time.sleep(0.05)
    service.kill()
    _, stderr = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, stderr

    service.start()
    for _ in range(2):  # syncing twice duplicates nothing
        synced = evsys_cli("sync", str(workdir / "sweep"), cwd=workdir, env=env)
        assert synced.returncode == 0, synced.stderr
    experiment_id = json.loads((workdir / "sweep" / "dashboard_experiment.json").read_text())[
        "experiment_id"
    ]
    with project.client() as client:
        runs = {r["name"]: r for r in client.list_runs(experiment_id=experiment_id)}
        assert sorted(runs) == ["seed1", "seed2", "seed3"]
        for name, run in runs.items():
            steps = client.get_run_steps(run["id"])
            stored = {(s["step"], s["name"]): s["value"] for s in steps}
            assert len(stored) == len(steps)  # no step metric twice
            assert stored == pytest.approx(logged_steps(workdir / "sweep" / name))
            assert client.get_run(run["id"])["status"] == "completed"
        assert client.get_experiment(experiment_id)["best_run_id"] in {
            r["id"] for r in runs.values()
        }
