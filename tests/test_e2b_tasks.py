"""Harbor e2b tasks through the real e2b SDK, against a local double of E2B's service
(tests/e2b_server.py: the REST control plane and envd's HTTP and Connect APIs)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("e2b")

from conftest import run_evsys  # noqa: E402
from e2b_server import FakeE2B  # noqa: E402

from evsys.data.types import E2BVerifier  # noqa: E402
from evsys.e2b_tasks import E2BTask  # noqa: E402
from evsys.errors import BackendError, DataError  # noqa: E402
from evsys.task_verifiers import task_verifier  # noqa: E402

KEY = "e2b_test_key_4f1c9a"
TESTS_ADD = "python3 -c 'from solution import add; assert add(2, 3) == 5 and add(-1, 1) == 0'"
GOOD = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```"
BAD = "```python\ndef add(a, b):\n    return a - b\n```"


@pytest.fixture
def e2b(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeE2B]:
    """The double, with the SDK pointed at it and the key in E2B_API_KEY."""
    with FakeE2B(KEY, hang_s=3.0) as server:
        monkeypatch.setenv("E2B_API_KEY", KEY)
        monkeypatch.setenv("E2B_API_URL", server.url)
        monkeypatch.setenv("E2B_SANDBOX_URL", server.url)
        monkeypatch.delenv("E2B_TEMPLATE", raising=False)
        yield server


def add_task(**options: Any) -> E2BTask:
    payload = E2BVerifier(dockerfile="FROM python:3.11", test_sh=TESTS_ADD)
    return E2BTask(payload, "task 'add'", **options)


def test_passing_and_failing_completions_score_1_and_0(e2b: FakeE2B):
    verifier = task_verifier(
        {"kind": "e2b", "dockerfile": "FROM python:3.11", "test_sh": TESTS_ADD}, "task 'add'"
    )
    passed = verifier.verify(prompt="Write add.", completion=GOOD, target={"id": "add"})
    assert passed.reward == 1.0
    assert passed.info["reason"] == "passed" and passed.info["exit_code"] == 0
    failed = verifier.verify(prompt="Write add.", completion=BAD, target={"id": "add"})
    assert failed.reward == 0.0
    assert failed.info["reason"] == "tests failed" and failed.info["exit_code"] == 1
    assert "AssertionError" in failed.info["stderr"]
    # One sandbox per completion, from the default template, each killed afterwards.
    assert len(e2b.created) == 2 and e2b.alive == []
    assert e2b.templates == ["base", "base"]
    assert passed.info["sandbox_id"] == e2b.created[0]
    # The key went to the control plane only, never to the sandbox's own API.
    for _method, path, headers in e2b.requests:
        sent = headers.get("x-api-key")
        assert sent == (KEY if path.startswith(("/v2/sandboxes", "/sandboxes/")) else None)


def test_the_tests_see_the_task_state_and_the_whole_completion(
    e2b: FakeE2B, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("E2B_TEMPLATE", "code-python")
    checks = "python3 test_state.py && grep -q 'Here it is' completion.txt"
    payload = E2BVerifier(
        dockerfile="FROM python:3.11",
        test_sh=checks,
        test_state_py="from solution import add\nassert add(1, 1) == 2\n",
    )
    task = E2BTask(payload, "task 'state'")
    assert task.verify(prompt="", completion=GOOD).reward == 1.0
    assert task.verify(prompt="", completion=BAD).reward == 0.0
    assert e2b.templates == ["code-python", "code-python"] and e2b.alive == []


ECHO_COMPLETION = "cat completion.txt"


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(completion=st.text(max_size=200))
def test_any_completion_reaches_the_sandbox_as_data(e2b: FakeE2B, completion: str):
    payload = E2BVerifier(dockerfile="FROM python:3.11", test_sh=ECHO_COMPLETION)
    result = E2BTask(payload, "task 'echo'").verify(prompt="", completion=completion)
    assert result.reward == 1.0, result.info
    assert result.info["stdout"] == completion  # byte for byte: never shell input
    assert e2b.alive == []


def test_tests_that_run_past_the_timeout_fail_and_the_sandbox_is_killed(e2b: FakeE2B):
    e2b.command_hang_s = 5.0
    result = add_task(command_timeout_s=1.0).verify(prompt="", completion=GOOD)
    assert result.reward == 0.0 and result.info["reason"] == "time limit"
    assert len(e2b.created) == 1 and e2b.alive == []


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        ("401", "AuthenticationException"),
        ("429", "RateLimitException"),
        ("500", "Internal error serving key <redacted>"),
        ("503", "Internal error serving key <redacted>"),
        ("hang", "Timeout"),
    ],
)
def test_service_failures_are_one_clear_error_without_the_key(
    e2b: FakeE2B, caplog: pytest.LogCaptureFixture, failure: str, expected: str
):
    e2b.failures = [failure]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BackendError) as caught:
        add_task(request_timeout_s=1.0, retries=0).verify(
            prompt="", completion=GOOD, target={"id": "add"}
        )
    message = str(caught.value)
    assert message.startswith("task 'add': the E2B service failed (")
    assert expected in message
    assert KEY not in message and KEY not in caplog.text
    assert e2b.alive == []


def test_a_failure_inside_the_sandbox_still_kills_it(
    e2b: FakeE2B, caplog: pytest.LogCaptureFixture
):
    e2b.fail_commands = True
    with pytest.raises(BackendError, match="envd failed to start the process"):
        add_task().verify(prompt="", completion=GOOD)
    assert len(e2b.created) == 1 and e2b.killed == e2b.created
    assert KEY not in caplog.text


def test_without_a_key_the_task_is_refused_naming_the_sandbox_verifier(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    with pytest.raises(DataError) as caught:
        task_verifier({"kind": "e2b", "dockerfile": "d", "test_sh": "true"}, "task 't1'")
    message = str(caught.value)
    assert message.startswith("task 't1': verifier.kind='e2b'")
    assert "E2B_API_KEY, which is not set" in message and "{kind: sandbox" in message
    with pytest.raises(DataError, match="test_sh must hold"):
        task_verifier({"kind": "e2b", "dockerfile": "d", "test_sh": " "}, "task 't1'")


# -- a whole run: a benchmark of e2b tasks, scored through the SDK ----------------------------


def write_tasks(path: Path, tasks: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))


def e2b_task(task_id: str, test_sh: str) -> dict[str, Any]:
    verifier = {"kind": "e2b", "dockerfile": "FROM python:3.11", "test_sh": test_sh}
    return {"task_id": task_id, "instruction": "Write add(a, b).", "verifier": verifier}


def test_a_run_scores_e2b_tasks_and_without_a_key_exits_2(workdir: Path, e2b: FakeE2B):
    import os

    rows = [{"prompt": "Write add(a, b).", "answer": GOOD}]
    write_tasks(workdir / "rows.jsonl", rows)
    # Whatever the mock policy answers, the first task's tests pass (its solution.py was
    # written into the sandbox) and the second's fail: pass_rate 0.5 only if both ran there.
    tasks = [e2b_task("written", "test -f solution.py"), e2b_task("failing", "exit 1")]
    write_tasks(workdir / "bench" / "tasks.jsonl", tasks)
    args = (
        "backend=mock",
        "data.path=rows.jsonl",
        "data.eval_path=null",
        "eval.enabled=false",
        "+metadata.benchmark=[{path: bench}]",
    )
    env = {k: os.environ[k] for k in ("E2B_API_KEY", "E2B_API_URL", "E2B_SANDBOX_URL")}
    done = run_evsys(*args, "hydra.run.dir=scored", cwd=workdir, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((workdir / "scored" / "run_result.json").read_text())
    assert record["metrics"]["test/bench/pass_rate"] == 0.5
    assert len(e2b.created) == 2 and e2b.alive == []
    for written in (workdir / "scored").rglob("*"):
        if written.is_file():
            assert KEY not in written.read_text(errors="replace"), written
    assert KEY not in done.stdout + done.stderr

    no_key = {**env, "E2B_API_KEY": ""}
    refused = run_evsys(*args, "hydra.run.dir=refused", cwd=workdir, env=no_key)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    output = refused.stdout + refused.stderr
    assert "E2B_API_KEY, which is not set" in output and "{kind: sandbox" in output
    assert "Traceback" not in output
