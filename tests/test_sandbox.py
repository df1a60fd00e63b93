"""The sandbox verifier's subprocess: tests pass or fail, and the limits hold."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from evsys import sandbox_child
from evsys.sandbox import extract_code, run_python

TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
LIMITS = {"timeout_s": 5.0, "memory_mb": 256}


def test_a_correct_solution_passes() -> None:
    result = run_python("def add(a, b):\n    return a + b\n", TESTS, **LIMITS)
    assert result.passed and result.reason == "passed" and result.exit_code == 0
    assert result.network in ("namespace", "guard")


def test_tests_may_import_the_solution_too() -> None:
    tests = "import solution\nassert solution.add(1, 1) == 2\n"
    assert run_python("def add(a, b):\n    return a + b\n", tests, **LIMITS).passed


def test_a_wrong_solution_fails_with_the_assertion() -> None:
    result = run_python("def add(a, b):\n    return a - b\n", TESTS, **LIMITS)
    assert not result.passed and result.reason == "tests failed" and result.exit_code == 1
    assert "AssertionError" in result.stderr and "tests.py" in result.stderr


def test_an_endless_loop_is_killed_by_the_time_limit() -> None:
    started = time.monotonic()
    result = run_python(
        "def add(a, b):\n    while True:\n        pass\n", TESTS, timeout_s=1.0, memory_mb=256
    )
    assert not result.passed and result.reason == "time limit"
    assert time.monotonic() - started < 4


def test_a_sleeper_is_killed_on_the_wall_clock_with_what_it_forked() -> None:
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    result = run_python(code, TESTS, timeout_s=1.0, memory_mb=256)
    assert result.reason == "time limit" and result.exit_code is None
    assert time.monotonic() - started < 4


def test_a_memory_hog_is_stopped_by_the_memory_limit() -> None:
    result = run_python("hog = bytearray(1024 ** 3)\n", TESTS, **LIMITS)
    assert not result.passed and result.reason == "memory limit"
    assert "MemoryError" in result.stderr


@pytest.mark.parametrize("address", [("127.0.0.1", 9), ("192.0.2.1", 80)])
def test_network_access_fails(address: tuple[str, int]) -> None:
    code = f"import socket\nsocket.create_connection({address!r}, timeout=2)\n"
    result = run_python(code, TESTS, **LIMITS)
    assert not result.passed and result.reason == "tests failed"
    assert "OSError" in result.stderr or "PermissionError" in result.stderr


def test_the_socket_guard_refuses_connections_where_no_namespace_can_be_made() -> None:
    """The fallback, exercised on its own (this machine may well make namespaces)."""
    code = (
        "import socket, sys\n"
        f"sys.path.insert(0, {str(sandbox_child.__file__.rsplit('/', 1)[0])!r})\n"
        "import sandbox_child\n"
        "sandbox_child._guard_sockets()\n"
        "for attempt in (lambda: socket.socket(), lambda: socket.create_connection(('127.0.0.1', 9))):\n"
        "    try:\n"
        "        attempt()\n"
        "    except PermissionError as exc:\n"
        "        print('refused:', exc)\n"
        "socket.socketpair()  # local pipes still work\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("refused: network access is disabled") == 2


@pytest.mark.parametrize("early_exit", ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n"])
def test_exiting_before_the_tests_run_does_not_pass(early_exit: str) -> None:
    result = run_python(early_exit, TESTS, **LIMITS)
    assert result.exit_code == 0 and not result.passed and result.reason == "did not finish"


def test_endless_output_is_cut_by_the_file_limit() -> None:
    result = run_python("while True:\n    print('x' * 1000)\n", TESTS, **LIMITS)
    assert not result.passed and result.reason == "output limit"


@pytest.mark.parametrize(
    ("completion", "code"),
    [
        ("Here:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1\n"),
        ("```py\nx = 1\n```\nthen\n```\nx = 2\n```", "x = 2\n"),  # the last block wins
        ("<answer>x = 3</answer>", "x = 3"),
        ("x = 4", "x = 4"),
    ],
)
def test_extract_code(completion: str, code: str) -> None:
    assert extract_code(completion) == code
