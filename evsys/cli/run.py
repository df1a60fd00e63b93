"""``evsys run [overrides]``: the same as ``python -m evsys [overrides]``."""

from evsys.app import main

__all__ = ["main"]
