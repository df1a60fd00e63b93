"""What one arm asks its cluster for: ``resources.*`` in the arm's own config.

A sweep over model sizes asks for what each arm needs (``resources.gpus_per_node`` for the 8B
arm, less for the 1B). Each field left unset takes the launcher's value (``hydra.launcher.*``);
the Slurm launcher submits the arms that ask for the same resources together, one job array per
distinct set. Launchers that run arms on this machine have nothing to size: they ignore it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from evsys.extension_specs import Strict

# The Slurm launcher's fields (hydra.launcher.*) these stand in for, in order.
LAUNCHER_KEYS = ("nodes", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min")
# Below this, submitit's warning signal (120 s ahead) would come before the job started.
MIN_TIMEOUT_MIN = 3


class ArmResources(Strict):
    """Per-arm cluster resources; unset (null) fields are the launcher's."""

    nodes: int | None = Field(
        None,
        ge=1,
        description="Nodes of the arm's job (hydra.launcher.nodes). More than 1 trains one arm "
        "across them and needs backend.params.num_nodes set to the same.",
    )
    gpus_per_node: int | None = Field(
        None, ge=0, description="GPUs on each node (hydra.launcher.gpus_per_node)."
    )
    cpus_per_task: int | None = Field(
        None, ge=1, description="CPUs of each node's task (hydra.launcher.cpus_per_task)."
    )
    mem_gb: int | None = Field(
        None, ge=1, description="Memory on each node, in GB (hydra.launcher.mem_gb)."
    )
    timeout_min: int | None = Field(
        None,
        ge=MIN_TIMEOUT_MIN,
        description="The job's time limit in minutes (hydra.launcher.timeout_min).",
    )

    def launcher_values(self) -> dict[str, Any]:
        """The launcher fields this arm sets, by launcher key; the unset ones are absent."""
        return {key: getattr(self, key) for key in LAUNCHER_KEYS if getattr(self, key) is not None}
