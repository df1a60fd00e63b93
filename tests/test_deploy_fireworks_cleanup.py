"""A Fireworks deploy that fails removes what it created; one deployed again reuses what exists.

Against the Fireworks-protocol server (tests/fireworks_server), made to fail on command at each
step (the lookups, the model's creation, an upload midway, validation, the deployment's creation,
its polls, a deployment that never becomes READY or FAILS) and in each way (a non-transient
status, 409 ALREADY_EXISTS, server errors until the retries are spent, cut connections, a reply
lost after the server acted), and in its cleanup too: hypothesis picks the step, the way and
whether the cleanup fails. After each failed deploy the account holds nothing (or exactly what
the error and the recorded entry name, with how to remove it), and a second deploy succeeds.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from deploy_runs import finished_run, record
from fireworks_server import FakeFireworks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evsys.cli import main
from evsys.deploy.actions import attempt_deploy, deploy_completed_run, deploy_run
from evsys.deploy.cleanup import DeployFailed
from evsys.deploy.fireworks import adapter_digest, adapter_files
from evsys.deploy.fireworks_resources import upload_mark
from evsys.errors import BackendError, ConfigError

KEY = "fw-test-key"
RUN_ID = "sft-local-20261122-103107-87f48e"
MODEL = f"accounts/acme/models/{RUN_ID}"
DEPLOYMENT = f"accounts/acme/deployments/{RUN_ID}"
ATTEMPTS = 3


def params(server: FakeFireworks, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": server.base_url,
        "account_id": server.account,
        "base_model": "accounts/fireworks/models/qwen3-8b",
        "poll_interval_s": 0.01,
        "timeout_s": 0.3,
        "backoff_s": 0,
        "max_attempts": ATTEMPTS,
        **extra,
    }


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREWORKS_API_KEY", KEY)


# -- deploying again ------------------------------------------------------------------------------


def test_a_second_deploy_of_a_run_reuses_its_model_and_deployment(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    with FakeFireworks() as server:
        first = deploy_run(run, "fireworks", params(server))
        calls = len(server.requests)
        second = deploy_run(run, "fireworks", params(server))
        again = server.routes()[calls:]
    assert second["model_id"] == first["model_id"] == f"{MODEL}#{DEPLOYMENT}"
    assert second["status"] == "running" and second["details"]["reused"] == ["model", "deployment"]
    assert again == ["get_model", "get_deployment", "get_deployment"]  # looked at, nothing made
    assert server.resources() == {MODEL, DEPLOYMENT}
    assert server.models[RUN_ID]["description"] == _mark(run)


def test_a_run_whose_adapter_changed_replaces_its_upload(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    weights = run / "checkpoints" / "final" / "adapter_model.safetensors"
    with FakeFireworks() as server:
        deploy_run(run, "fireworks", params(server))
        weights.write_bytes(b"trained further" * 50)
        entry = deploy_run(run, "fireworks", params(server))
    assert entry["status"] == "running" and entry["details"]["reused"] == []
    assert server.resources() == {MODEL, DEPLOYMENT}
    assert server.models[RUN_ID]["description"] == _mark(run)
    assert server.uploads[(RUN_ID, "adapter_model.safetensors")] == weights.read_bytes()


def test_a_half_finished_upload_of_the_run_is_finished(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    with FakeFireworks() as server:
        server.fail("validate", 400)  # validation refuses: the deploy fails…
        server.fail("delete_model", *[500] * ATTEMPTS)  # …and cannot remove its model
        with pytest.raises(DeployFailed):
            deploy_run(run, "fireworks", params(server))
        assert server.models[RUN_ID]["state"] == "UPLOADING"
        entry = deploy_run(run, "fireworks", params(server))
    assert entry["status"] == "running"
    assert server.resources() == {MODEL, DEPLOYMENT}
    assert server.routes().count("create_model") == 1  # the model was finished, not made again


def test_a_model_uploaded_before_uploads_were_marked_is_replaced(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    with FakeFireworks() as server:
        server.models[RUN_ID] = {
            "name": MODEL, "kind": "HF_PEFT_ADDON", "displayName": RUN_ID, "state": "READY",
            "files": {},
        }  # fmt: skip
        entry = deploy_run(run, "fireworks", params(server))
    assert entry["status"] == "running" and server.models[RUN_ID]["description"] == _mark(run)
    assert server.resources() == {MODEL, DEPLOYMENT}


@pytest.mark.parametrize("taken", ["model", "deployment"])
def test_an_id_taken_by_something_else_is_bad_input_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], taken: str
) -> None:
    run = finished_run(tmp_path / "run")
    with FakeFireworks() as server:
        if taken == "model":
            server.models[RUN_ID] = {
                "name": MODEL, "kind": "HF_PEFT_ADDON", "displayName": "someone else's",
                "description": "not from evsys", "state": "READY", "files": {},
            }  # fmt: skip
        else:
            other = "accounts/acme/models/other"
            server.models["other"] = {"name": other, "state": "READY", "files": {}}
            server.deployments[RUN_ID] = {"name": DEPLOYMENT, "state": "READY", "baseModel": other}
        before = server.resources()
        code = _cli(["deploy", str(run), "--to", "fireworks", *_flags(params(server))])
        after = server.resources()
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{taken}_id" in err and "not this run's upload" in err and "Traceback" not in err
    assert after == before  # what was there is untouched; what this deploy made, removed
    assert "deployments" not in record(run)
    if taken == "model":
        assert "create_model" not in server.routes()
    else:  # it had made the model before it found the deployment's id taken
        assert server.routes()[-1] == "delete_model"


# -- what is not retried, what is adopted ---------------------------------------------------------


@pytest.mark.parametrize("route", ["validate", "upload_endpoint", "create_deployment"])
def test_already_exists_is_not_retried(tmp_path: Path, route: str) -> None:
    run = finished_run(tmp_path / "run")
    with FakeFireworks(failures={route: [409, 409, 409, 409, 409]}) as server:
        if route == "create_deployment":  # it answers 409, yet there is no such deployment
            with pytest.raises(BackendError, match="keeps changing"):
                deploy_run(run, "fireworks", params(server))
            assert server.routes().count(route) == 3  # looked at again each time, not retried
        else:
            with pytest.raises(BackendError, match="HTTP 409"):
                deploy_run(run, "fireworks", params(server))
            assert server.routes().count(route) == 1
        assert server.resources() == set()
        server.failures.clear()
        assert deploy_run(run, "fireworks", params(server))["status"] == "running"


@pytest.mark.parametrize("status", [409, 400, 500], ids=lambda status: f"HTTP {status}")
def test_already_exists_is_known_by_its_grpc_code_too(tmp_path: Path, status: int) -> None:
    """ALREADY_EXISTS (gRPC code 6) under any HTTP status: looked at again, never retried."""
    run = finished_run(tmp_path / "run")
    with FakeFireworks(failures={"create_deployment": [(status, 6)]}) as server:
        entry = deploy_run(run, "fireworks", params(server))
    assert entry["status"] == "running"
    routes = server.routes()
    first = routes.index("create_deployment")
    assert routes[first : first + 3] == ["create_deployment", "get_deployment", "create_deployment"]
    assert server.resources() == {MODEL, DEPLOYMENT}


@pytest.mark.parametrize("route", ["create_model", "create_deployment"])
def test_a_create_whose_reply_was_lost_is_adopted(tmp_path: Path, route: str) -> None:
    """The server made it, the reply never came, the retry hears 409: that is this deploy's own
    resource, used as it is, not a failure and not a second one."""
    run = finished_run(tmp_path / "run")
    with FakeFireworks(failures={route: ["lost_reply"]}) as server:
        entry = deploy_run(run, "fireworks", params(server))
    assert entry["status"] == "running"
    assert server.routes().count(route) == 2  # the lost one, then the retry's 409
    assert server.resources() == {MODEL, DEPLOYMENT}


# -- cleanup that fails ---------------------------------------------------------------------------


def test_leftovers_are_named_with_how_to_remove_them_and_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = finished_run(tmp_path / "run")
    with FakeFireworks(final_state="FAILED", creating_polls=0) as server:
        server.fail("delete_deployment", *[503] * ATTEMPTS)
        code = _cli(["deploy", str(run), "--to", "fireworks", *_flags(params(server))])
        left = server.resources()
        err = capsys.readouterr().err
        # the deployment could not be deleted, so neither could its model
        assert code == 1 and left == {MODEL, DEPLOYMENT}
        assert "deployment is FAILED: out of H100s" in err and "Traceback" not in err
        assert f"firectl deployment delete {RUN_ID} --hard --account-id acme" in err
        assert f"firectl model delete {RUN_ID} --account-id acme" in err
        (entry,) = record(run)["deployments"]
        assert entry["status"] == "failed" and "out of H100s" in entry["details"]["error"]
        assert _named(entry) == left
        assert KEY not in json.dumps(entry) and KEY not in err

        # Deployed again, the leftovers are taken up: no 409, no duplicate.
        server.final_state = "READY"
        assert _cli(["deploy", str(run), "--to", "fireworks", *_flags(params(server))]) == 0
        assert server.resources() == {MODEL, DEPLOYMENT}
        assert server.deployments[RUN_ID]["state"] == "READY"


# -- failure at every step, in every way ----------------------------------------------------------

STEPS = {  # step → (route, how many calls of it go through first)
    "look up the model": ("get_model", 0),
    "create the model": ("create_model", 0),
    "get the upload URLs": ("upload_endpoint", 0),
    "upload midway": ("upload", 1),
    "validate": ("validate", 0),
    "look up the deployment": ("get_deployment", 0),
    "create the deployment": ("create_deployment", 0),
    "poll the deployment": ("get_deployment", 1),
    "never READY": ("", 0),
    "deployment FAILED": ("", 0),
}
KINDS = [400, 403, 409, 500, 503, "reset", "lost_reply"]
CLEANUP = [None, ("delete_deployment", 500), ("delete_deployment", 403), ("delete_model", 503)]
CLEANUP += [("delete_model", "reset"), ("get_deployment", 500)]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    step=st.sampled_from(sorted(STEPS)),
    kind=st.sampled_from(KINDS),
    cleanup=st.sampled_from(CLEANUP),
)
def test_a_deploy_failing_anywhere_leaves_nothing_unnamed_and_the_next_succeeds(
    step: str, kind: int | str, cleanup: tuple[str, int | str] | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp, FakeFireworks() as server:
        run = finished_run(Path(tmp) / "run")
        route, through = STEPS[step]
        if step == "never READY":
            server.creating_polls = 10**6
        elif step == "deployment FAILED":
            server.final_state, server.creating_polls = "FAILED", 0
        else:
            server.fail(route, *[0] * through, *[kind] * (ATTEMPTS * 3))
        if cleanup is not None:
            server.fail(cleanup[0], *[cleanup[1]] * (ATTEMPTS * 3))

        try:
            entry = deploy_run(run, "fireworks", params(server))
        except (BackendError, ConfigError) as exc:
            failure: Exception | None = exc
        else:  # only a create whose reply was lost (then adopted) may still succeed
            failure = None
            assert kind == "lost_reply" and route.startswith("create_"), (step, kind)
            assert entry["status"] == "running"
        left = server.resources()
        if failure is not None:
            assert not isinstance(failure, ConfigError), failure
            named = _named(record(run)["deployments"][0]) if "deployments" in record(run) else set()
            # Never less than what is left; more only where the lookups that would tell went
            # unanswered (then "may be left" is all one can say).
            assert left <= named, (step, kind, cleanup, str(failure))
            unanswered = route.startswith("get_") or (cleanup and cleanup[0].startswith("get_"))
            assert named == left or unanswered, (step, kind, cleanup, str(failure))
            if named:  # the error says it too, each with how to remove it
                assert isinstance(failure, DeployFailed)
                assert {item.what.rpartition(" ")[2] for item in failure.leftovers} == named
                assert all(item.remove.startswith("firectl ") for item in failure.leftovers)

        server.failures.clear()
        server.final_state, server.creating_polls = "READY", 1
        entry = deploy_run(run, "fireworks", params(server))
        assert entry["status"] == "running" and entry["model_id"] == f"{MODEL}#{DEPLOYMENT}"
        assert server.resources() == {MODEL, DEPLOYMENT}
        assert server.models[RUN_ID]["state"] == "READY"
        assert server.models[RUN_ID]["description"] == _mark(run)
        assert server.deployments[RUN_ID]["state"] == "READY"
        final = run / "checkpoints" / "final"
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            assert server.uploads[(RUN_ID, name)] == (final / name).read_bytes()


def _named(entry: dict[str, Any]) -> set[str]:
    """The resource names a recorded failed entry says are left (``Fireworks model <name>``)."""
    assert entry["status"] == "failed"
    leftovers = entry["details"]["leftovers"]
    assert all(re.search(r"firectl .* delete ", item["remove"]) for item in leftovers)
    return {item["what"].rpartition(" ")[2] for item in leftovers}


def _mark(run: Path) -> str:
    return upload_mark(RUN_ID, adapter_digest(adapter_files(run / "checkpoints" / "final")))


def _flags(values: dict[str, Any]) -> list[str]:
    return [f"{k}={'null' if v is None else v}" for k, v in values.items()]


def _cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)


def test_a_configured_deploy_records_its_leftovers_too(tmp_path: Path) -> None:
    """After a run (a config's ``deploy:`` section), as with ``evsys deploy``: the one line
    says what is left, and the run's record keeps it."""
    run = finished_run(tmp_path / "run")
    with FakeFireworks(final_state="FAILED", creating_polls=0) as server:
        server.fail("delete_deployment", *[500] * ATTEMPTS)
        result = json.loads((run / "run_result.json").read_text())
        result["config"]["deploy"] = {"kind": "fireworks", "params": params(server)}
        (run / "run_result.json").write_text(json.dumps(result))
        entry, error = attempt_deploy("the run", lambda: deploy_completed_run(run))
        left = server.resources()
    assert entry is None and error is not None and "\n" not in error
    assert (
        error.startswith("deploying the run failed: ") and f"firectl model delete {RUN_ID}" in error
    )
    assert left == {MODEL, DEPLOYMENT} == _named(record(run)["deployments"][0])
    assert record(run)["status"] == "completed"
