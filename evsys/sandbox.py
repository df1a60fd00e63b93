"""Run a completion's code and its tests in a limited subprocess: the offline stand-in for E2B.

The code (extracted from the completion by :func:`extract_code`) is written to ``solution.py``
and the tests to ``tests.py`` in a fresh temporary directory; a child Python runs the solution
and then the tests in one namespace (:mod:`evsys.sandbox_child`). The tests pass when they run
to their end and the child exits with status 0.

Limits, set in the child before the code runs:

- wall clock: ``timeout_s``; the child's whole process group is killed when it is spent;
- CPU: ``RLIMIT_CPU`` of ``timeout_s`` (rounded up), a backstop to the wall clock;
- memory: ``RLIMIT_AS`` of ``memory_mb`` (a ``MemoryError`` in the child, or its death);
- files: ``RLIMIT_FSIZE`` caps every file it writes, its captured stdout and stderr included;
- network: a network namespace of its own (``unshare``), else a Python-level socket guard;
  :attr:`SandboxResult.network` says which held.

This keeps honest mistakes (an endless loop, a memory hog, a test that fetches a URL) from
hurting the run; it is not a security boundary against code written to escape it. Python code
only: the child is the interpreter evsys runs on, in isolated mode (``-I``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from evsys import sandbox_child

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
OUTPUT_LIMIT_BYTES = 1 << 20
"""The most the child may write to one file, stdout and stderr included."""
TAIL_CHARS = 2000
"""How much of the child's stdout and stderr a result keeps."""


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    reason: str
    """``passed``, ``tests failed``, ``time limit``, ``memory limit``, ``output limit`` or
    ``did not finish`` (the program stopped before its tests ran to their end)."""
    exit_code: int | None
    """The child's exit status (negative: the signal that ended it); None if it was killed on
    the wall clock."""
    network: str
    """How the network was cut: ``namespace`` or ``guard`` (empty if the child never started)."""
    stdout: str
    stderr: str
    """The last :data:`TAIL_CHARS` characters of each."""


def extract_code(completion: str) -> str:
    """The code of a completion: its last fenced code block, else the content of its last
    ``<answer>…</answer>``, else all of it."""
    fenced = _FENCE.findall(completion)
    if fenced:
        return fenced[-1]
    tagged = _ANSWER.findall(completion)
    return tagged[-1] if tagged else completion


def run_python(code: str, tests: str, *, timeout_s: float, memory_mb: int) -> SandboxResult:
    """Run ``code`` then ``tests`` in the sandbox; see the module docstring for the limits."""
    with tempfile.TemporaryDirectory(prefix="evsys-sandbox-") as tmp:
        workdir = Path(tmp)
        (workdir / "solution.py").write_text(code, encoding="utf-8")
        (workdir / "tests.py").write_text(tests, encoding="utf-8")
        done_read, done_write = os.pipe()
        try:
            exit_code = _run_child(workdir, timeout_s, memory_mb, done_write)
            os.close(done_write)
            done_write = -1
            finished = os.read(done_read, 1) == b"1"
        finally:
            os.close(done_read)
            if done_write >= 0:
                os.close(done_write)
        stdout = _read(workdir / "stdout")
        network, stderr = _split_network_line(_read(workdir / "stderr"))
    reason = _reason(exit_code, finished, stderr)
    return SandboxResult(
        reason == "passed", reason, exit_code, network, stdout[-TAIL_CHARS:], stderr[-TAIL_CHARS:]
    )


def _run_child(workdir: Path, timeout_s: float, memory_mb: int, done_fd: int) -> int | None:
    """The child's exit status, or None when it ran out of wall-clock time (and was killed)."""
    command = [
        sys.executable,
        "-I",  # no PYTHON* variables, no user site, no script directory on sys.path
        "-B",
        sandbox_child.__file__,
        str(memory_mb * 1024 * 1024),
        str(max(1, math.ceil(timeout_s))),
        str(OUTPUT_LIMIT_BYTES),
        str(done_fd),
    ]
    env = {"PATH": os.defpath, "HOME": str(workdir), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
    with open(workdir / "stdout", "wb") as out, open(workdir / "stderr", "wb") as err:
        child = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            pass_fds=(done_fd,),
            start_new_session=True,  # its own process group: one kill reaches what it forked
        )
        try:
            return child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        finally:
            _kill_group(child)


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group may be gone already
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _reason(exit_code: int | None, finished: bool, stderr: str) -> str:
    if exit_code is None or exit_code == -signal.SIGXCPU:
        return "time limit"
    # Python ignores SIGXFSZ: a write past RLIMIT_FSIZE raises OSError(EFBIG) instead.
    if exit_code == -signal.SIGXFSZ or "File too large" in stderr:
        return "output limit"
    if "MemoryError" in stderr or exit_code == -signal.SIGKILL:
        return "memory limit"
    if exit_code != 0:
        return "tests failed"
    return "passed" if finished else "did not finish"


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace") if path.is_file() else ""


def _split_network_line(stderr: str) -> tuple[str, str]:
    """The child's first stderr line names how the network was cut; the rest is the program's."""
    first, _, rest = stderr.partition("\n")
    if first.startswith(sandbox_child.NETWORK_LINE):
        return first.removeprefix(sandbox_child.NETWORK_LINE), rest
    return "", stderr
