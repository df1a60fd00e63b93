"""The experiment as a Python object: compose, plan, run, conclude (see :mod:`.experiment`)."""

from evsys.experiment.experiment import Experiment
from evsys.experiment.results import ArmResult, ExperimentResult

__all__ = ["ArmResult", "Experiment", "ExperimentResult"]
