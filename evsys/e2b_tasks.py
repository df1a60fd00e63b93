"""Harbor ``e2b`` tasks, scored in an E2B sandbox through the ``e2b`` SDK.

For each completion a sandbox is created (template ``E2B_TEMPLATE``, else the SDK's default
``base``), the completion's code (:func:`evsys.sandbox.extract_code`) is written to
``/home/user/solution.py`` (the whole completion to ``completion.txt``, the task's
``test_state_py`` to ``test_state.py``), and the task's ``test_sh`` runs there with bash: exit
code 0 passes (1.0), anything else fails (0.0), as the local ``sandbox`` verifier scores. The
sandbox is killed afterwards, whatever happened. The task's ``dockerfile`` is not built: the
template must already hold what the tests need.

The key comes only from ``E2B_API_KEY`` and goes only where the SDK sends it (``E2B_DOMAIN``,
or ``E2B_API_URL``/``E2B_SANDBOX_URL``, all the researcher's environment). A service failure
(4xx, 5xx, a timeout) raises :class:`~evsys.errors.BackendError` with the key masked: no score
beats a wrong one. The ``e2b`` package is imported only when a task is scored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from evsys.data.types import E2BVerifier
from evsys.errors import BackendError, DataError, MissingDependencyError
from evsys.protocols import VerificationResult
from evsys.sandbox import TAIL_CHARS, extract_code

log = logging.getLogger(__name__)

API_KEY_ENV = "E2B_API_KEY"
TEMPLATE_ENV = "E2B_TEMPLATE"
WORKDIR = "/home/user"
SANDBOX_ALTERNATIVE = (
    "or score the task locally with the sandbox verifier: "
    "{kind: sandbox, tests: <python tests>, timeout_s, memory_mb}"
)


class E2BTask:
    """Pass (1.0) when the task's ``test_sh`` exits 0 in an E2B sandbox holding the completion.

    ``command_timeout_s`` bounds ``test_sh`` (past it the task fails, ``time limit``);
    ``request_timeout_s`` bounds each call to the service; ``retries``: the SDK's retries of
    429/502/503/504 (None: its default)."""

    def __init__(
        self,
        payload: E2BVerifier,
        where: str,
        *,
        command_timeout_s: float = 60.0,
        request_timeout_s: float = 30.0,
        retries: int | None = None,
    ):
        if not isinstance(payload.test_sh, str) or not payload.test_sh.strip():
            raise DataError(f"{where}: verifier.test_sh must hold the shell command that tests")
        if not os.environ.get(API_KEY_ENV):
            raise DataError(
                f"{where}: verifier.kind='e2b' runs the task's tests in an E2B sandbox and "
                f"needs an API key in {API_KEY_ENV}, which is not set; set it, "
                + SANDBOX_ALTERNATIVE
            )
        try:
            import e2b  # noqa: F401  (checked now, so a missing SDK fails before the run)
        except ImportError:
            raise MissingDependencyError("e2b", "e2b", "The e2b verifier") from None
        self.payload, self.where = payload, where
        self.command_timeout_s, self.request_timeout_s = command_timeout_s, request_timeout_s
        self.retries = retries

    def verify(self, *, prompt: str, completion: str, target: Any = None) -> VerificationResult:
        from e2b import Sandbox

        key = os.environ.get(API_KEY_ENV)
        where = f"task {target.get('id')!r}" if isinstance(target, Mapping) else self.where
        if not key:
            raise BackendError(f"{where}: {API_KEY_ENV} is no longer set; " + SANDBOX_ALTERNATIVE)
        options: dict[str, Any] = {"api_key": key, "request_timeout": self.request_timeout_s}
        if self.retries is not None:
            options["retries"] = self.retries
        sandbox = None
        try:
            sandbox = Sandbox.create(
                template=os.environ.get(TEMPLATE_ENV) or None,
                timeout=int(self.command_timeout_s + 2 * self.request_timeout_s + 60),
                **options,
            )
            sandbox.files.write_files(self._files(completion), use_octet_stream=True)
            result = self._run_tests(sandbox)
            result.info["sandbox_id"] = sandbox.sandbox_id
            return result
        except BackendError:
            raise
        except Exception as exc:  # the SDK's and its transport's many types: the service failed
            message = str(exc).replace(key, "<redacted>")
            raise BackendError(
                f"{where}: the E2B service failed ({type(exc).__name__}: {message})"
            ) from None
        finally:
            if sandbox is not None:
                _kill(sandbox, where, key)

    def _files(self, completion: str) -> list[dict[str, str]]:
        files = [
            {"path": f"{WORKDIR}/solution.py", "data": extract_code(completion)},
            {"path": f"{WORKDIR}/completion.txt", "data": completion},
        ]
        if self.payload.test_state_py is not None:
            files.append({"path": f"{WORKDIR}/test_state.py", "data": self.payload.test_state_py})
        return files

    def _run_tests(self, sandbox: Any) -> VerificationResult:
        from e2b import CommandExitException, TimeoutException

        try:
            done = sandbox.commands.run(
                self.payload.test_sh, cwd=WORKDIR, timeout=self.command_timeout_s
            )
        except CommandExitException as exc:  # the tests ran and failed
            return _result("tests failed", exc.exit_code, exc.stdout, exc.stderr)
        except TimeoutException:  # the tests did not end in command_timeout_s
            return _result("time limit", None, "", "")
        return _result(
            "passed" if done.exit_code == 0 else "tests failed",
            done.exit_code,
            done.stdout,
            done.stderr,
        )


def _result(reason: str, exit_code: int | None, stdout: str, stderr: str) -> VerificationResult:
    info = {
        "reason": reason,
        "exit_code": exit_code,
        "stdout": (stdout or "")[-TAIL_CHARS:],
        "stderr": (stderr or "")[-TAIL_CHARS:],
    }
    return VerificationResult(float(reason == "passed"), info)


def _kill(sandbox: Any, where: str, key: str) -> None:
    """Kill the sandbox; a failure to is logged (it dies at its own timeout anyway)."""
    try:
        sandbox.kill(request_timeout=10)
    except Exception as exc:  # whatever the SDK raises, the verdict (or its error) stands
        log.warning(
            "%s: could not kill E2B sandbox %s (%s: %s); it ends at its own timeout",
            where,
            sandbox.sandbox_id,
            type(exc).__name__,
            str(exc).replace(key, "<redacted>"),
        )
