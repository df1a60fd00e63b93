"""``evsys experiments [--tag T] [--status S] [--json]``: the dashboard's experiments."""

from evsys.cli.tracked import add_experiments_arguments as add_arguments
from evsys.cli.tracked import execute

__all__ = ["add_arguments", "execute"]
