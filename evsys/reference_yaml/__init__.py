"""The reference's YAML format (evsys-sdk's single file: ``run`` / ``runs`` / ``matrix``), run
unchanged through evsys's Hydra machinery.

A file is read and its root checked (:mod:`.source`), translated into overrides of ``base.yaml``
and sweep settings (:mod:`.translate`), and planned, run or migrated to an experiment file
(:mod:`.api`; the experiment file: :mod:`.migration`)::

    evsys run config.yaml            # one run, or every arm of its matrix / runs
    evsys validate config.yaml --deep
    evsys migrate config.yaml        # experiments/<name>.yaml, the same arms and configs
"""

from evsys.reference_yaml.api import (
    ReferenceExperiment,
    dump_yaml,
    experiment_from_yaml,
    load_yaml,
    migrate,
    plan,
    run_experiment,
    validate_yaml,
)
from evsys.reference_yaml.source import MatrixSpec, ReferenceConfig
from evsys.reference_yaml.translate import Translation, translate

__all__ = [
    "MatrixSpec",
    "ReferenceConfig",
    "ReferenceExperiment",
    "Translation",
    "dump_yaml",
    "experiment_from_yaml",
    "load_yaml",
    "migrate",
    "plan",
    "run_experiment",
    "translate",
    "validate_yaml",
]
