"""Backends: the engines recipes run on. Each registers itself, its recipe implementations and
its inference client when imported; heavy engines import their libraries only when a run starts."""

from evsys.backends import (
    local,  # noqa: F401
    mock,  # noqa: F401
    tinker,  # noqa: F401
)
