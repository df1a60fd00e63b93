# The reference's Experiment usage (Experiment page, experiments/<date>_<slug>/run.py), verbatim.
# The test's project has a src package registering a transform its config.yaml uses.
# The code below is the reference's, kept as written: neither linted nor formatted.
# ruff: noqa
# fmt: off
from evsys_sdk import Experiment
import src # registers custom verifiers/transforms

Experiment.from_yaml("config.yaml").run()
