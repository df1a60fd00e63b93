"""submitit's local executor, with each arm's torch threads sized to its share of the CPUs.

``hydra/launcher=evsys_local`` (the ``local_processes`` preset extends it). It launches exactly as
hydra-submitit-launcher's ``submitit_local`` does, all arms of a batch at once, each in its own
process; every arm starts with ``EVSYS_ARM_CPUS`` set to ``cpus_per_task`` or, when that is null,
this machine's CPUs divided by the arms (see :mod:`evsys.cpus`). Without it each arm's torch would
start a thread per core, and N arms would run N times more threads than there are cores.
"""

# No `from __future__ import annotations` here: OmegaConf reads the dataclass's annotations.
import os
from dataclasses import dataclass
from typing import Sequence  # noqa: UP035

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn

try:  # the slurm extra: pip install 'evsys[slurm]'
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher
except ImportError:
    LocalLauncher = None

ARM_CPUS = "EVSYS_ARM_CPUS"  # evsys.cpus.ARM_CPUS_ENV, without importing evsys at plugin scan

if LocalLauncher is not None:

    @dataclass
    class EvsysLocalConf(LocalQueueConf):
        _target_: str = "hydra_plugins.evsys_plugins.local_launcher.EvsysLocalLauncher"

    ConfigStore.instance().store(
        group="hydra/launcher", name="evsys_local", node=EvsysLocalConf, provider="evsys"
    )

    class EvsysLocalLauncher(LocalLauncher):
        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            from evsys.cpus import launcher_share

            share = launcher_share(len(job_overrides), self.params.get("cpus_per_task"))
            previous = os.environ.get(ARM_CPUS)
            os.environ[ARM_CPUS] = str(share)  # submitit copies the environment at submission
            try:
                return super().launch(job_overrides, initial_job_idx)
            finally:
                if previous is None:
                    os.environ.pop(ARM_CPUS, None)
                else:
                    os.environ[ARM_CPUS] = previous
