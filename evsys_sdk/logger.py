"""The reference's logging functions, over the standard library's ``evsys`` logger.

evsys logs through ``logging.getLogger("evsys.<module>")``; these only configure that tree.
``EVSYS_LOGGING_LEVEL`` (a level name or number) is the default level of
:func:`configure_logger`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO

ROOT = "evsys"
LEVEL_ENV = "EVSYS_LOGGING_LEVEL"
DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _EvsysHandler(logging.StreamHandler):
    """The handler :func:`configure_logger` installs: replaced, never stacked, when called again."""


def get_logger(name: str | None = None) -> logging.Logger:
    """The ``evsys`` logger, or ``evsys.<name>`` (a name already under ``evsys`` is kept)."""
    if not name or name == ROOT:
        return logging.getLogger(ROOT)
    if name.startswith(ROOT + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT}.{name}")


def set_level(level: int | str) -> None:
    """Set the ``evsys`` logger's level: a number or a name (``debug``, ``INFO``, …)."""
    get_logger().setLevel(_level(level))


def configure_logger(
    level: int | str | None = None,
    *,
    fmt: str = DEFAULT_FORMAT,
    stream: IO[str] | None = None,
) -> logging.Logger:
    """Send the ``evsys`` logger's records to ``stream`` (stderr) in ``fmt``, at ``level`` (None:
    ``EVSYS_LOGGING_LEVEL``, else INFO). Calling it again replaces its handler."""
    logger = get_logger()
    if level is None:
        level = os.environ.get(LEVEL_ENV) or logging.INFO
    logger.setLevel(_level(level))
    for handler in [h for h in logger.handlers if isinstance(h, _EvsysHandler)]:
        logger.removeHandler(handler)
    handler = _EvsysHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    logger.addHandler(handler)
    return logger


def _level(level: int | str) -> int:
    if isinstance(level, bool):
        raise ValueError(f"not a logging level: {level!r}")
    if isinstance(level, int):
        return level
    text = str(level).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    number = logging.getLevelName(text.upper())
    if not isinstance(number, int):
        known = "DEBUG, INFO, WARNING, ERROR, CRITICAL"
        raise ValueError(f"not a logging level: {level!r} (one of {known}, or a number)")
    return number
