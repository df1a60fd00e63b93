"""The ``local`` deployer: the adapter merged into its base model, served on this machine.

``evsys deploy <run dir> --to local`` merges the run's LoRA adapter into the base weights (PEFT
``merge_and_unload``), saves them under ``<run dir>/deploy/local/<model id>/`` and starts an
OpenAI-compatible server on them in the background: vLLM where it is installed and a GPU is
present, else ``transformers serve`` (CPU or GPU). The server runs detached, in a session of its
own, so it outlives the command; its pid, port and log are recorded in the run's
``run_result.json``, and ``evsys deploy --stop <run dir>`` ends it. A start that fails (the merge,
the server exiting, or not answering in time) ends the server and removes what it wrote.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from evsys.config import Strict
from evsys.deploy.cleanup import Undo
from evsys.deploy.protocol import Deployment, DeploySource
from evsys.deploy.runs import read_record
from evsys.errors import BackendError, ConfigError, MissingDependencyError, Problem
from evsys.registry import register_deployer

SERVER_LOG = "server.log"
_MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_STOP_GRACE_S = 10.0

# Starts the server in a session of its own and exits at once, printing the server's pid: the
# server is then nobody's child here, so it outlives this process and is never left a zombie.
_DETACH = """
import json, subprocess, sys
command, cwd, env, log = json.loads(sys.argv[1])
with open(log, "ab") as out:
    server = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
print(server.pid)
"""


@register_deployer("local")
class LocalDeployer:
    """Merged weights behind an OpenAI-compatible server on this machine."""

    class Config(Strict):
        server: Literal["auto", "transformers", "vllm"] = Field(
            "auto",
            description="What serves the merged model: `vllm` (needs vllm and a GPU), "
            "`transformers` (`transformers serve`, CPU or GPU; needs fastapi and uvicorn: "
            "pip install 'evsys[serve]'), `auto`: vllm where it is installed and a GPU is "
            "present, else transformers.",
        )
        host: str = Field("127.0.0.1", description="Address the server listens on.")
        port: int | None = Field(
            None, ge=1, le=65535, description="Port to serve on. None: a free port."
        )
        model_id: str | None = Field(
            None,
            pattern=_MODEL_ID,
            description="Model name clients send (and the merged directory's name). None: "
            "the run id.",
        )
        device: str = Field(
            "auto", description="transformers serve's device (cpu, cuda:0, …); auto: its choice."
        )
        dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
            None,
            description="dtype of the merged weights. None: the base model's own (its "
            "config.json), else float32.",
        )
        num_threads: int | None = Field(
            None, ge=1, description="CPU threads of the server (OMP_NUM_THREADS). None: its own."
        )
        startup_timeout_s: float = Field(
            600.0, gt=0, description="Longest wait for the server to answer /health."
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def deploy(self, source: DeploySource) -> Deployment:
        adapter = source.peft_adapter()
        _refuse_if_serving(source.run_dir)
        server = self._server()
        model_id = self.cfg.model_id or _slug(source.run_id)
        where = source.deploy_dir / "local"
        # A start that fails ends the server and removes the files it made, leaving the run
        # directory as it was; what it cannot remove is named (evsys.deploy.cleanup).
        undo = Undo("local")
        with undo:
            _make_directory(where, undo)
            merged = where / model_id
            merge_adapter(source.base_model, adapter, merged, self.cfg.dtype)
            undo.created(f"merged model {merged}", _rm(merged), lambda: _remove(merged))

            host, port = self.cfg.host, self.cfg.port or free_port(self.cfg.host)
            log = where / SERVER_LOG
            log.write_bytes(b"")
            undo.created(f"server log {log}", _rm(log), lambda: log.unlink(missing_ok=True))
            command = self._command(server, model_id, host, port)
            pid = start_detached(command, where, self._env(), log)
            started = _process_start(pid)
            undo.created(
                f"server process {pid} (its process group)",
                f"kill -KILL -- -{pid}",
                lambda: _end_server(pid, started),
            )
            url = f"http://{_client_host(host)}:{port}"
            wait_until_ready(url, pid, log, self.cfg.startup_timeout_s)
        return Deployment(
            target="local",
            endpoint=f"{url}/v1",
            model_id=model_id,
            details={
                "server": server,
                "pid": pid,
                "process_start": started,
                "host": host,
                "port": port,
                "merged_model": str(merged),
                "log": str(log),
            },
        )

    @staticmethod
    def stop(entry: dict[str, Any]) -> dict[str, Any]:
        """End the server of a recorded deployment; returns the fields that change."""
        details = entry.get("details") or {}
        pid = details.get("pid")
        ended = terminate(pid, details.get("process_start")) if isinstance(pid, int) else False
        return {
            "status": "stopped",
            "stopped_at": datetime.now(UTC).isoformat(),
            "stop": "terminated" if ended else "the server had already ended",
        }

    # -- which server, how it is started ------------------------------------------------------

    def _server(self) -> str:
        server = self.cfg.server
        if server == "auto":
            server = "vllm" if _vllm_usable() else "transformers"
        if server == "vllm" and importlib.util.find_spec("vllm") is None:
            raise ConfigError(
                Problem("server", "vllm is not installed", value="vllm", expected="transformers")
            )
        if server == "transformers":
            for package in ("fastapi", "uvicorn"):
                if importlib.util.find_spec(package) is None:
                    raise MissingDependencyError(package, "serve", "transformers serve")
        return server

    def _command(self, server: str, model_id: str, host: str, port: int) -> list[str]:
        # The merged directory is named after the model id and the server runs beside it, so
        # that the name clients send is the short model id, not a path.
        if server == "vllm":
            return [
                sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                "--model", model_id, "--served-model-name", model_id,
                "--host", host, "--port", str(port),
            ]  # fmt: skip
        return [
            sys.executable, "-m", "transformers.cli.transformers", "serve", model_id,
            "--host", host, "--port", str(port), "--device", self.cfg.device,
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",  # the merged model is a local directory: never the hub
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",  # the CLI would ask PyPI for a newer version
        }
        if self.cfg.num_threads is not None:
            env["OMP_NUM_THREADS"] = str(self.cfg.num_threads)
        return env


# -- merging ----------------------------------------------------------------------------------


def merge_adapter(base_model: str, adapter: Path, out: Path, dtype: str | None) -> None:
    """``base_model`` with ``adapter`` merged in, saved (with its tokenizer) to ``out``; built in
    a temporary directory and renamed into place, so ``out`` is never half-written."""
    from evsys.backends.local.models import load_model, quiet_libraries, resolve_model_path

    dtype = dtype or _saved_dtype(resolve_model_path(base_model))
    model, tokenizer = load_model(base_model, device="cpu", dtype=dtype, adapter=str(adapter))
    merged = model.merge_and_unload()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        with quiet_libraries():
            merged.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _saved_dtype(model_dir: Path) -> str:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return "float32"
    saved = config.get("dtype") or config.get("torch_dtype")
    return saved if saved in ("float32", "bfloat16", "float16") else "float32"


# -- the detached server ------------------------------------------------------------------------


def start_detached(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> int:
    """Start ``command`` in a session of its own, output to ``log``; returns its pid."""
    payload = json.dumps([command, str(cwd), env, str(log)])
    done = subprocess.run(
        [sys.executable, "-c", _DETACH, payload], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise BackendError(f"could not start the server: {done.stderr.strip()[-500:]}")
    return int(done.stdout.strip())


def wait_until_ready(url: str, pid: int, log: Path, timeout_s: float) -> None:
    """Return once ``url``/health answers 200; raise BackendError (with the end of the server's
    log) when the server exits first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise BackendError(f"the server exited before it was ready:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        time.sleep(0.5)
    raise BackendError(
        f"the server did not answer {url}/health within {timeout_s:g} s (startup_timeout_s):\n"
        f"{_tail(log)}"
    )


def terminate(pid: int, started: int | None) -> bool:
    """End the server's process group (SIGTERM, then SIGKILL after a grace period); False when
    it had already ended, or the pid now belongs to another process."""
    if not is_alive(pid) or (started is not None and _process_start(pid) != started):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + _STOP_GRACE_S
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot): tells the server from a later process
    that got the same pid. None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[19])  # field 22 of proc(5), counted after the command name


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", 0))
        return probe.getsockname()[1]


def _make_directory(path: Path, undo: Undo) -> None:
    """``path`` and its missing parents; the topmost one this made is registered for removal."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    if missing:
        top = missing[-1]
        undo.created(f"directory {top}", _rm(top), lambda: _remove(top))


def _rm(path: Path) -> str:
    """The command that removes ``path`` (quoted: a run directory's name may hold anything)."""
    return f"rm -r -- {shlex.quote(str(path))}"


def _remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _end_server(pid: int, started: int | None) -> None:
    terminate(pid, started)
    deadline = time.monotonic() + 2.0  # a killed process takes a moment to vanish
    while _is_the_server(pid, started) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_the_server(pid, started):
        raise BackendError(f"the server (pid {pid}) is still running")


def _is_the_server(pid: int, started: int | None) -> bool:
    return is_alive(pid) and (started is None or _process_start(pid) == started)


def _refuse_if_serving(run_dir: Path) -> None:
    for entry in read_record(run_dir).get("deployments") or []:
        details = entry.get("details") or {}
        pid = details.get("pid")
        if (
            entry.get("target") == "local"
            and entry.get("status") == "running"
            and isinstance(pid, int)
            and is_alive(pid)
            and _process_start(pid) == details.get("process_start")
        ):
            raise ConfigError(
                Problem(
                    "run_dir",
                    f"this run is already served at {entry.get('endpoint')} (pid {pid}); "
                    "end it first with: evsys deploy --stop <run dir>",
                    value=str(run_dir),
                )
            )


def _vllm_usable() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-_") or "model"


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"
