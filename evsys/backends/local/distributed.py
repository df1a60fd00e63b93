"""Data-parallel training on the local backend: one process per GPU (or, for tests, per CPU).

With ``backend.params.num_processes > 1`` the arm's process does not train itself. It writes the
job (the validated config and the training rows) to ``<run_dir>/ddp/`` and starts the ranks with
``torch.distributed.run``; each rank runs this module, prepares the model on its own device and
runs the recipe's TRL trainer, which wraps it in DDP through accelerate (the launcher's
environment tells accelerate the world). Rank 0 alone logs, validates, saves adapters and writes
the result the arm's process then reads back and records.

    python -m evsys backend=local backend.params.num_processes=4 hydra/launcher=gpus \
        hydra.launcher.gpus_per_arm=4
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from evsys.backends.local.slurm_nodes import srun_command
from evsys.cpus import note_ranks
from evsys.errors import BackendError
from evsys.files import write_json_atomically, write_jsonl_atomically
from evsys.protocols import Row, RunResult

WORKER_ENV = "EVSYS_DDP_WORKER"
JOB_FILE, ROWS_FILE, RESULT_FILE, LOG_FILE = "job.json", "rows.jsonl", "result.json", "ranks.log"
STOP_GRACE_S = 30  # how long the ranks get to stop after the arm is interrupted


def in_worker() -> bool:
    """Whether this process is one rank of a data-parallel run (it trains, it does not launch)."""
    return os.environ.get(WORKER_ENV) == "1"


def is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def train_in_ranks(
    config: Any,
    run_id: str,
    run_dir: Path,
    rows: list[Row],
    num_processes: int,
    num_nodes: int = 1,
) -> RunResult:
    """Train the arm in ``num_processes`` ranks on each of ``num_nodes`` nodes (the nodes of
    its Slurm job, see :mod:`evsys.backends.local.slurm_nodes`); returns rank 0's result."""
    job_dir = run_dir / "ddp"
    job_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomically(
        job_dir / JOB_FILE, {"run_id": run_id, "config": config.model_dump(mode="json")}
    )
    write_jsonl_atomically(job_dir / ROWS_FILE, rows)
    (job_dir / RESULT_FILE).unlink(missing_ok=True)
    if num_nodes > 1:
        command = srun_command(num_nodes, num_processes, job_dir, run_dir)
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={num_processes}",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            "-m",
            "evsys.backends.local.rank",
            str(job_dir),
            str(run_dir),
        ]
    note_ranks(num_processes * num_nodes, num_nodes)
    env = {**os.environ, WORKER_ENV: "1"}
    with (
        (job_dir / LOG_FILE).open("w") as log,
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as ranks,
    ):
        # The ranks' output goes to the terminal (rank 0's progress bar) and to the log.
        assert ranks.stdout is not None
        try:
            for line in ranks.stdout:
                sys.stdout.write(line)
                log.write(line)
        except BaseException:  # interrupted (a signal): the ranks stop with the arm
            _stop(ranks)
            raise
        code = ranks.wait()
    result_path = job_dir / RESULT_FILE
    if code != 0 or not result_path.is_file():
        cause = _first_rank_error((job_dir / LOG_FILE).read_text(errors="replace"))
        raise BackendError(
            f"data-parallel training ({num_processes} processes on each of {num_nodes} "
            f"node(s)) exited with code {code}"
            f"{': ' + cause if cause else ''}; the ranks' output is in {job_dir / LOG_FILE}"
        )
    return RunResult(**json.loads(result_path.read_text()))


# "evsys.errors.ConfigError: …" as a rank's traceback ends; the launcher's own error is not it.
_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")


def _first_rank_error(output: str) -> str | None:
    for line in output.splitlines():
        match = _ERROR_LINE.match(line.strip())
        if match and match.group(1) != "ChildFailedError":
            return f"{match.group(1)}: {match.group(2)}"
    return None


def _stop(ranks: subprocess.Popen) -> None:
    """SIGTERM to torch.distributed.run (it passes it on to the ranks), SIGKILL if it lingers."""
    ranks.terminate()
    try:
        ranks.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        ranks.kill()
        ranks.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
