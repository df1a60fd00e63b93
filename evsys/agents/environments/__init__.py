"""The bundled toy environments (each registers itself when imported)."""

from evsys.agents.environments import calculator, guess_number  # noqa: F401
