"""``evsys runs [--experiment ID] [--status S] [--json]``: the dashboard's runs."""

from evsys.cli.tracked import add_runs_arguments as add_arguments
from evsys.cli.tracked import execute

__all__ = ["add_arguments", "execute"]
