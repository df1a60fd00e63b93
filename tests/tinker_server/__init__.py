"""A Tinker-protocol test server backed by a tiny torch model: a test double for the hosted
Tinker service, which the tests cannot reach, spoken to by the real, unmodified ``tinker`` SDK."""

from .server import TinkerTestServer

__all__ = ["TinkerTestServer"]
