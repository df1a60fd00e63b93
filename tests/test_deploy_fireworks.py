"""The fireworks deployer against a Fireworks-protocol server on 127.0.0.1 (tests/fireworks_server).

Upload, validation and deployment go through the same REST calls as against Fireworks itself;
failures (401, 429, 500, a deployment that fails) are injected and the client's answer asserted:
what it retries, what it gives up on, that the key never leaves the control plane or reaches a
file, and that only a deployment that succeeded is recorded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from deploy_runs import finished_run, record
from fireworks_server import FakeFireworks

from evsys.cli import main
from evsys.deploy.actions import deploy_run
from evsys.errors import BackendError, ConfigError

KEY = "fw-test-key"
ROUTES = [
    "get_model",
    "create_model",
    "upload_endpoint",
    "upload",
    "upload",
    "validate",
    "validate",
]
DEPLOY_ROUTES = ["get_deployment", "create_deployment", *["get_deployment"] * 3]


def params(server: FakeFireworks, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": server.base_url,
        "account_id": server.account,
        "base_model": "accounts/fireworks/models/qwen3-8b",
        "poll_interval_s": 0,
        "backoff_s": 0,
        "max_attempts": 3,
        **extra,
    }


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREWORKS_API_KEY", KEY)


def test_uploads_validates_deploys_and_records(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    with FakeFireworks() as server:
        entry = deploy_run(run, "fireworks", params(server, accelerator_type="NVIDIA_H100_80GB"))

    model = "accounts/acme/models/sft-local-20261122-103107-87f48e"
    deployment = "accounts/acme/deployments/sft-local-20261122-103107-87f48e"
    assert entry["target"] == "fireworks"
    assert entry["endpoint"] == f"{server.base_url}/inference/v1"
    assert entry["model_id"] == f"{model}#{deployment}"
    assert entry["status"] == "running" and entry["details"]["state"] == "READY"
    assert record(run)["deployments"] == [entry]

    # The calls of the upload guide, in order (each resource looked up first: a re-deploy
    # reuses it); validation and the deployment were polled.
    assert server.routes() == [*ROUTES, *DEPLOY_ROUTES]
    created = server.models["sft-local-20261122-103107-87f48e"]
    assert created["peftDetails"] == {
        "baseModel": "accounts/fireworks/models/qwen3-8b",
        "r": 8,
        "targetModules": ["q_proj", "v_proj"],
    }
    final = run / "checkpoints" / "final"
    assert server.uploads == {
        (created["name"].rpartition("/")[2], name): (final / name).read_bytes()
        for name in ("adapter_config.json", "adapter_model.safetensors")
    }
    assert server.deployments["sft-local-20261122-103107-87f48e"]["acceleratorType"] == (
        "NVIDIA_H100_80GB"
    )

    # The key went to the control plane only: never to a signed URL, never into a file.
    for request in server.requests:
        sent = request["headers"].get("Authorization")
        assert sent == (None if request["route"] == "upload" else f"Bearer {KEY}")
    assert not [p for p in run.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]


def test_rate_limits_and_server_errors_are_retried(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    failures = {"create_model": [429, 500], "upload": [503], "get_deployment": [502]}
    with FakeFireworks(failures=failures) as server:
        entry = deploy_run(run, "fireworks", params(server))
    assert entry["status"] == "running"
    assert server.routes().count("create_model") == 3  # 429, 500, then created
    assert server.routes().count("upload") == 3  # one file retried once
    assert all(not left for left in server.failures.values())


def test_a_rejected_key_fails_at_once_and_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = finished_run(tmp_path / "run")
    monkeypatch.setenv("FIREWORKS_API_KEY", "fw-wrong-key")
    with FakeFireworks() as server:
        code = _cli(["deploy", str(run), "--to", "fireworks", *_flags(params(server))])
    err = capsys.readouterr().err
    assert code == 1
    assert server.routes() == ["get_model"]  # a 401 is not retried
    assert "HTTP 401" in err and "FIREWORKS_API_KEY" in err
    assert "fw-wrong-key" not in err
    assert "deployments" not in record(run)


def test_a_server_that_keeps_failing_exhausts_the_retries(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    failing = r"get the upload URLs.*HTTP 500.*after 3 attempts"
    with (
        FakeFireworks(failures={"upload_endpoint": [500] * 5}) as server,
        pytest.raises(BackendError, match=failing),
    ):
        deploy_run(run, "fireworks", params(server))
    assert server.routes() == [
        "get_model",
        "create_model",
        *["upload_endpoint"] * 3,
        "delete_model",
    ]
    assert "deployments" not in record(run)
    assert server.resources() == set()  # the model it created was removed


def test_a_deployment_that_fails_is_reported_with_its_reason(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    with (
        FakeFireworks(final_state="FAILED", creating_polls=0) as server,
        pytest.raises(BackendError, match="deployment is FAILED: out of H100s"),
    ):
        deploy_run(run, "fireworks", params(server))
    assert "deployments" not in record(run)
    assert server.resources() == set()  # the deployment, then the model, were removed
    assert server.routes()[-4:] == [
        "delete_deployment", "get_deployment", "get_deployment", "delete_model"
    ]  # fmt: skip


def test_without_waiting_the_deployment_is_recorded_as_created(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    with FakeFireworks() as server:
        entry = deploy_run(run, "fireworks", params(server, wait=False, model_id="my-lora"))
    assert entry["status"] == "creating"
    assert entry["model_id"] == "accounts/acme/models/my-lora#accounts/acme/deployments/my-lora"
    assert server.routes()[-2:] == ["get_deployment", "create_deployment"]  # looked up, not polled


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"env": "FIREWORKS_API_KEY"}, "FIREWORKS_API_KEY (the Fireworks API key) is not set"),
        ({"env": "FIREWORKS_ACCOUNT_ID", "account_id": None}, "no Fireworks account"),
        ({"adapter": False}, "is not a LoRA adapter"),
    ],
    ids=["no key", "no account", "no adapter"],
)
def test_bad_input_fails_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: dict[str, Any], message: str
) -> None:
    run = finished_run(tmp_path / "run", adapter=setup.get("adapter", True), backend="mock")
    monkeypatch.delenv(setup.get("env", "UNSET_FOR_THIS_TEST"), raising=False)
    with FakeFireworks() as server:
        chosen = params(server)
        if "account_id" in setup:
            chosen["account_id"] = None
        with pytest.raises(ConfigError, match=re.escape(message)):
            deploy_run(run, "fireworks", chosen)
    assert server.requests == []


def test_the_cli_prints_the_endpoint_and_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = finished_run(tmp_path / "run")
    with FakeFireworks() as server:
        code = _cli(["deploy", str(run), "--to", "fireworks", *_flags(params(server))])
    out = capsys.readouterr().out
    assert code == 0
    assert f"endpoint: {server.base_url}/inference/v1" in out
    assert "model id: accounts/acme/models/" in out and KEY not in out


def _flags(values: dict[str, Any]) -> list[str]:
    return [f"{k}={'null' if v is None else v}" for k, v in values.items()]


def _cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)
