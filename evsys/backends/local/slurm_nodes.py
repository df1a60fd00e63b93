"""One arm across the nodes of its Slurm job (``backend.params.num_nodes > 1``).

The arm's process runs once, on the job's first node (the Slurm launcher submits a multi-node
arm without submitit's ``srun``). To train, it starts one ``torch.distributed.run`` per node with
``srun`` inside the job's own allocation; the agents meet through the c10d rendezvous on the
first node of ``SLURM_JOB_NODELIST`` (``scontrol show hostnames``), at a port derived from the
job id, so that two arms sharing a node never meet. gloo on CPU, NCCL on GPU (accelerate's
choice); rank 0 logs, saves and validates as on one node.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from evsys.errors import BackendError

# Rendezvous ports: PORT_BASE + job id mod PORT_SPAN, clear of the ephemeral range (32768+).
PORT_BASE, PORT_SPAN = 20000, 10000


def rendezvous_port(job_id: str) -> int:
    return PORT_BASE + int(job_id) % PORT_SPAN


def job_hostnames(nodelist: str) -> list[str]:
    """The job's nodes, in Slurm's order (the first hosts the rendezvous)."""
    done = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    names = done.stdout.split()
    if done.returncode != 0 or not names:
        raise BackendError(
            f"`scontrol show hostnames {nodelist}` failed (exit {done.returncode}): "
            f"{done.stderr.strip() or 'no host names'}"
        )
    return names


def srun_command(num_nodes: int, nproc_per_node: int, job_dir: Path, run_dir: Path) -> list[str]:
    """``srun … torch.distributed.run …``: one agent per node of this job, each starting
    ``nproc_per_node`` ranks of :mod:`evsys.backends.local.rank`."""
    job_id = os.environ.get("SLURM_JOB_ID")
    have = os.environ.get("SLURM_JOB_NUM_NODES")
    if job_id is None or have != str(num_nodes):
        where = f"a Slurm job of {have} node(s)" if job_id else "no Slurm job"
        raise BackendError(
            f"backend.params.num_nodes={num_nodes} needs a Slurm job of {num_nodes} nodes and "
            f"this arm runs in {where}: launch it with hydra/launcher=slurm and "
            f"hydra.launcher.nodes={num_nodes}"
        )
    master = job_hostnames(os.environ["SLURM_JOB_NODELIST"])[0]
    return [
        "srun",
        f"--nodes={num_nodes}",
        f"--ntasks={num_nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",  # a node lost: the other nodes' agents stop, the arm fails
        "--unbuffered",
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={num_nodes}",
        f"--nproc_per_node={nproc_per_node}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={master}:{rendezvous_port(job_id)}",
        f"--rdzv_id=evsys-{job_id}",
        "--max_restarts=0",
        "-m",
        "evsys.backends.local.rank",
        str(job_dir),
        str(run_dir),
    ]
