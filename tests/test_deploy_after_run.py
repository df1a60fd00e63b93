"""A config's ``deploy:`` section ships a single run once it completed, from the command and from
``evsys.Experiment`` (a sweep's best arm: test_deploy.py for the command, here for the API).

The deployer is a throw-away one, installed as another package's entry point for the command and
registered in this process for the API: it appends what it was asked to ship to a file, so every
call is counted, and raises when told to.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
from conftest import install_plugin, run_evsys
from deploy_runs import record

from evsys import Experiment
from evsys.registry import DEPLOYERS

RECORDER = '''
"""A deployer from another package: appends each source it is asked to ship to ``calls``."""
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

from evsys.deploy.protocol import Deployment
from evsys.errors import BackendError


class Recorder:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        calls: str
        label: str = "recorded"
        fail: Literal["", "runtime", "backend"] = ""

    def __init__(self, **params):
        self.cfg = self.Config(**params)

    def deploy(self, source):
        with open(self.cfg.calls, "a") as calls:
            calls.write(json.dumps({"run_dir": str(source.run_dir), "run_id": source.run_id,
                                    "checkpoint": source.checkpoint}) + "\\n")
        if self.cfg.fail == "runtime":
            raise RuntimeError("the upload was refused")
        if self.cfg.fail == "backend":
            raise BackendError("the endpoint never became ready")
        return Deployment(target="recorder", endpoint="http://recorder.invalid/v1",
                          model_id=self.cfg.label, details={"api_key": "must-not-be-written"})
'''


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    return install_plugin(
        tmp_path / "site",
        "recorder_deployer",
        RECORDER,
        {"evsys.deployers": {"recorder": "recorder_deployer:Recorder"}},
    )


@pytest.fixture
def recorder(plugin_site: Path, clean_registries: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorder registered in this process, for the Experiment API."""
    monkeypatch.syspath_prepend(str(plugin_site))
    DEPLOYERS.add("recorder", importlib.import_module("recorder_deployer").Recorder)


def deploy_override(calls: Path, **params: str) -> str:
    extra = "".join(f", {key}: {value}" for key, value in params.items())
    return f"deploy={{kind: recorder, params: {{calls: '{calls}'{extra}}}}}"


def calls_in(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def with_plugin(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def single_run(workdir: Path, site: Path, *overrides: str):
    return run_evsys(
        "algorithm.params.max_steps=2",
        *overrides,
        "hydra.run.dir=run",
        cwd=workdir,
        env=with_plugin(site),
    )


def sweep(workdir: Path, site: Path, *overrides: str):
    return run_evsys(
        "--multirun", *overrides, "hydra.sweep.dir=sweep", cwd=workdir, env=with_plugin(site)
    )


# -- the command ----------------------------------------------------------------------------------


def test_a_single_run_with_deploy_ships_itself_once_completed(
    workdir: Path, plugin_site: Path
) -> None:
    calls = workdir / "calls.jsonl"
    done = single_run(workdir, plugin_site, deploy_override(calls, label="single"))
    assert done.returncode == 0, done.stderr

    run = (workdir / "run").resolve()
    (call,) = calls_in(calls)  # once
    assert call["run_dir"] == str(run)
    assert call["checkpoint"] == str(run / "checkpoints" / "final")
    written = record(run)
    assert written["status"] == "completed"
    assert call["run_id"] == written["run_id"]
    (entry,) = written["deployments"]
    assert entry["target"] == "recorder" and entry["model_id"] == "single"
    assert entry["status"] == "running"
    assert entry["details"] == {"api_key": "<redacted>"}
    assert "deployed to recorder: http://recorder.invalid/v1 (model single)" in done.stdout


def test_a_failed_run_deploys_nothing(workdir: Path, plugin_site: Path) -> None:
    calls = workdir / "calls.jsonl"
    done = single_run(workdir, plugin_site, "backend.params.fail_at_step=1", deploy_override(calls))
    assert done.returncode == 1
    assert calls_in(calls) == []
    written = record(workdir / "run")
    assert written["status"] == "failed" and "deployments" not in written
    assert "deploy" not in done.stderr


@pytest.mark.parametrize(
    ("fail", "message"),
    [
        ("runtime", "evsys: deploying the run failed: RuntimeError: the upload was refused"),
        ("backend", "evsys: deploying the run failed: the endpoint never became ready"),
    ],
)
def test_a_deploy_that_fails_exits_1_and_keeps_the_run_completed(
    workdir: Path, plugin_site: Path, fail: str, message: str
) -> None:
    calls = workdir / "calls.jsonl"
    done = single_run(workdir, plugin_site, deploy_override(calls, fail=fail))
    assert done.returncode == 1
    assert len(calls_in(calls)) == 1
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if "deploy" in line] == [message]
    written = record(workdir / "run")
    assert written["status"] == "completed" and "deployments" not in written
    assert "evsys: run " in done.stdout and " completed in " in done.stdout


def test_a_sweep_whose_deployer_raises_exits_1_with_one_line(
    workdir: Path, plugin_site: Path
) -> None:
    calls = workdir / "calls.jsonl"
    done = sweep(
        workdir,
        plugin_site,
        "seed=1,2",
        "algorithm.params.max_steps=2",
        "metadata.success_metric=train/steps",
        deploy_override(calls, fail="runtime"),
    )
    assert done.returncode == 1
    assert len(calls_in(calls)) == 1  # the best arm only
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if "deploy" in line] == [
        "evsys: deploying the best arm failed: RuntimeError: the upload was refused"
    ]
    result = json.loads((workdir / "sweep" / "sweep_result.json").read_text())
    assert [a["status"] for a in result["arms"]] == ["completed", "completed"]


@pytest.mark.parametrize(
    "sweeper",
    [
        ["seed=1,2"],
        ["hydra/sweeper=basic", "seed=1,2"],
        [
            "hydra/sweeper=evolve",
            "+backend.params.landscape={}",
            "hydra.sweeper.space=[algorithm.params.lora_rank]",
            "hydra.sweeper.generations=1",
            "hydra.sweeper.population=2",
        ],
    ],
    ids=["evsys", "basic", "evolve"],
)
def test_every_sweeper_deploys_its_best_arm(
    workdir: Path, plugin_site: Path, sweeper: list[str]
) -> None:
    calls = workdir / "calls.jsonl"
    done = sweep(
        workdir,
        plugin_site,
        *sweeper,
        "algorithm.params.max_steps=4",
        "metadata.success_metric=eval/exact_match",
        deploy_override(calls),
    )
    assert done.returncode == 0, done.stderr
    best = json.loads((workdir / "sweep" / "sweep_result.json").read_text())["best_arm"]
    (call,) = calls_in(calls)
    assert call["run_dir"] == str((workdir / "sweep" / best).resolve())
    assert [entry["target"] for entry in record(workdir / "sweep" / best)["deployments"]] == [
        "recorder"
    ]


def test_a_run_that_cannot_be_shipped_exits_1_with_the_reason(workdir: Path) -> None:
    done = run_evsys(
        "algorithm.params.max_steps=2", "deploy={kind: local}", "hydra.run.dir=run", cwd=workdir
    )
    assert done.returncode == 1
    assert "evsys: the run was not deployed: run_dir: its final checkpoint" in done.stderr
    assert "is not a LoRA adapter" in done.stderr and "Traceback" not in done.stderr
    assert record(workdir / "run")["status"] == "completed"


def test_a_bad_deploy_section_refuses_the_run_before_it_starts(workdir: Path) -> None:
    done = run_evsys("deploy={kind: lokal}", "hydra.run.dir=run", cwd=workdir)
    assert done.returncode == 2
    assert "deploy.kind: unknown deployer 'lokal'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (workdir / "run").exists()


# -- the Experiment API ---------------------------------------------------------------------------


def test_the_api_deploys_a_single_run(tmp_path: Path, recorder: None) -> None:
    calls = tmp_path / "calls.jsonl"
    experiment = Experiment.from_overrides(
        ["algorithm.params.max_steps=2", deploy_override(calls, label="api")]
    )
    result = experiment.run(tmp_path / "run")

    run = (tmp_path / "run").resolve()
    assert [call["run_dir"] for call in calls_in(calls)] == [str(run)]
    assert result.deploy_error is None
    assert result.deployment is not None and result.deployment["model_id"] == "api"
    assert result.deployment == record(run)["deployments"][0]
    (arm,) = result.arms
    assert arm.status == "completed" and arm.record is not None
    assert arm.record["deployments"] == [result.deployment]


def test_the_api_deploys_nothing_for_a_failed_run(tmp_path: Path, recorder: None) -> None:
    calls = tmp_path / "calls.jsonl"
    experiment = Experiment.from_overrides(
        ["backend.params.fail_at_step=1", deploy_override(calls)]
    )
    result = experiment.run(tmp_path / "run")
    assert result.status == "failed"
    assert calls_in(calls) == []
    assert result.deployment is None and result.deploy_error is None


def test_the_api_returns_a_failed_deploy_with_the_run_completed(
    tmp_path: Path, recorder: None
) -> None:
    calls = tmp_path / "calls.jsonl"
    experiment = Experiment.from_overrides(
        ["algorithm.params.max_steps=2", deploy_override(calls, fail="runtime")]
    )
    result = experiment.run(tmp_path / "run")
    assert len(calls_in(calls)) == 1
    assert result.status == "completed" and result.deployment is None
    assert result.deploy_error == "deploying the run failed: RuntimeError: the upload was refused"
    assert "deployments" not in record(tmp_path / "run")


def test_the_api_deploys_a_sweeps_best_arm_only(tmp_path: Path, recorder: None) -> None:
    calls = tmp_path / "calls.jsonl"
    experiment = Experiment.from_overrides(
        [
            "seed=1,2",
            "algorithm.params.max_steps=2",
            "metadata.success_metric=train/steps",
            deploy_override(calls, label="best"),
        ],
        multirun=True,
    )
    result = experiment.run(tmp_path / "sweep")

    assert result.best_arm is not None and result.best_arm.run_dir is not None
    best = result.best_arm.run_dir.resolve()
    assert [call["run_dir"] for call in calls_in(calls)] == [str(best)]
    assert result.deployment is not None and result.deployment["model_id"] == "best"
    for arm in result.arms:
        assert arm.record is not None
        expected = [result.deployment] if arm.name == result.best_arm.name else None
        assert arm.record.get("deployments") == expected
