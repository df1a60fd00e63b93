"""Deployers: the registry kind, ``evsys deploy``'s bad input, the record, a sweep's best arm.

The local and fireworks deployers themselves are tested in test_deploy_local.py (a real server on
a trained tiny model) and test_deploy_fireworks.py (a Fireworks-protocol server).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import install_plugin, run_evsys
from deploy_runs import finished_run, record

from evsys.cli import main
from evsys.deploy.protocol import Deployment
from evsys.deploy.runs import record_deployment, update_deployments
from evsys.registry import registry_for

CAPTURE = '''
"""A deployer from another package: writes what it was given next to the run."""
import json
from pydantic import BaseModel, ConfigDict

from evsys.deploy.protocol import Deployment


class Capture:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        label: str = "captured"

    def __init__(self, **params):
        self.cfg = self.Config(**params)

    def deploy(self, source):
        (source.run_dir / "captured.json").write_text(json.dumps(
            {"checkpoint": source.checkpoint, "base_model": source.base_model,
             "backend": source.backend, "run_id": source.run_id}
        ))
        return Deployment(target="capture", endpoint="http://capture.invalid/v1",
                          model_id=self.cfg.label, details={"api_key": "must-not-be-written"})
'''


def test_deployers_are_a_registry_kind_with_schemas() -> None:
    deployers = registry_for("deployer")
    assert {"local", "fireworks"} <= set(deployers.names())
    assert deployers.entry_point_group == "evsys.deployers"
    schema = deployers.schema_for("fireworks")
    assert "base_model" in schema["required"]
    assert "port" in deployers.schema_for("local")["properties"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--to", "lokal"], ["unknown deployer 'lokal'", "did you mean 'local'?"]),
        (["--to", "local", "port=abc", "prot=1"], ["port: Input should be a valid integer",
                                                    "prot: unknown key", "did you mean 'port'?"]),
        (["--to", "fireworks"], ["base_model: required value is missing"]),
        (["--to", "local", "junk"], ["expected KEY=VALUE"]),
        ([], ["name the deployer with --to"]),
    ],
    ids=["unknown kind", "bad params", "missing param", "not key=value", "no kind"],
)  # fmt: skip
def test_bad_arguments_exit_2_with_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: list[str]
) -> None:
    run = finished_run(tmp_path / "run")
    before = (run / "run_result.json").read_text()
    assert _cli(["deploy", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert all(text in err for text in expected), err
    assert "Traceback" not in err
    assert (run / "run_result.json").read_text() == before
    assert not (run / "deploy").exists()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d, "no such run directory"),
        (lambda d: d.mkdir() or d, "not a run directory: it has no run_result.json"),
        (lambda d: finished_run(d, status="failed"), "the run did not complete (failed)"),
        (lambda d: finished_run(d, adapter=False, backend="mock"), "is not a LoRA adapter"),
    ],
    ids=["missing", "not a run", "failed run", "mock checkpoint"],
)
def test_runs_that_cannot_be_deployed_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, expected: str
) -> None:
    run = make(tmp_path / "run")
    for kind in ("local", "fireworks base_model=accounts/fireworks/models/x"):
        assert _cli(["deploy", str(run), "--to", *kind.split()]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
    assert not (tmp_path / "run" / "deploy").exists()


def test_stop_of_a_run_without_deployments_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = finished_run(tmp_path / "run")
    assert _cli(["deploy", "--stop", str(run)]) == 0
    assert "nothing of" in capsys.readouterr().out
    assert _cli(["deploy", "--stop", str(tmp_path / "missing")]) == 2


def test_deployments_are_added_to_the_record_redacted(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    first = Deployment(target="a", endpoint="http://a/v1", model_id="m1")
    second = Deployment(target="b", endpoint="http://b/v1", model_id="m2", details={"token": "x"})
    record_deployment(run, first)
    entry = record_deployment(run, second)
    assert entry["details"] == {"token": "<redacted>"}
    written = record(run)
    assert [d["model_id"] for d in written["deployments"]] == ["m1", "m2"]
    assert written["metrics"] == {"train/steps": 2}  # the rest of the record is untouched

    update_deployments(run, lambda entries: [{**entries[0], "status": "stopped"}, entries[1]])
    assert [d["status"] for d in record(run)["deployments"]] == ["stopped", "running"]
    assert not list(run.glob(".run_result.json.*.tmp"))  # atomic: no temporary left behind


def test_a_sweep_deploys_its_best_arm(workdir: Path) -> None:
    site = install_plugin(
        workdir / "site",
        "capture_deployer",
        CAPTURE,
        {"evsys.deployers": {"capture": "capture_deployer:Capture"}},
    )
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    done = run_evsys(
        "--multirun",
        "seed=1,2",
        "algorithm.params.max_steps=2",
        "metadata.success_metric=train/steps",
        "deploy={kind: capture, params: {label: best}}",
        "hydra.sweep.dir=sweep",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    best = json.loads((workdir / "sweep" / "sweep_result.json").read_text())["best_arm"]
    deployed = {p.parent.name for p in (workdir / "sweep").glob("*/captured.json")}
    assert deployed == {best}
    arm = workdir / "sweep" / best
    captured = json.loads((arm / "captured.json").read_text())
    assert captured["checkpoint"] == str((arm / "checkpoints" / "final").resolve())
    assert captured["backend"] == "mock"
    (entry,) = record(arm)["deployments"]
    assert entry["target"] == "capture" and entry["model_id"] == "best"
    assert entry["details"] == {"api_key": "<redacted>"}
    assert f"deployed {best} to capture: http://capture.invalid/v1 (model best)" in done.stdout


def test_a_sweep_whose_deploy_fails_keeps_its_arms_and_exits_1(workdir: Path) -> None:
    done = run_evsys(
        "--multirun",
        "seed=1,2",
        "algorithm.params.max_steps=2",
        "metadata.success_metric=train/steps",
        "deploy={kind: local}",
        "hydra.sweep.dir=sweep",
        cwd=workdir,
    )
    assert done.returncode == 1
    assert "the best arm was not deployed" in done.stderr and "is not a LoRA adapter" in done.stderr
    assert "Traceback" not in done.stderr
    result = json.loads((workdir / "sweep" / "sweep_result.json").read_text())
    assert [a["status"] for a in result["arms"]] == ["completed", "completed"]


def test_a_bad_deploy_section_refuses_the_sweep_before_it_starts(workdir: Path) -> None:
    done = run_evsys(
        "--multirun", "seed=1,2", "deploy={kind: lokal}", "hydra.sweep.dir=sweep", cwd=workdir
    )
    assert done.returncode == 2
    assert "deploy.kind: unknown deployer 'lokal'" in done.stderr
    assert "did you mean 'local'?" in done.stderr
    assert not (workdir / "sweep").exists()


def _cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)
