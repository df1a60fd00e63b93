"""The Hydra sweepers evsys ships, by target, and the pre-flight checks a sweeper brings.

Pre-flight (:mod:`evsys.preflight`) sits below the sweepers it checks for: a sweeper with
settings of its own (the evolve sweeper's search space, proposer and objectives) registers their
check here, and pre-flight looks it up by the sweeper's target instead of importing it.
"""

from __future__ import annotations

from evsys.registry import Registry

EVSYS_SWEEPER = "hydra_plugins.evsys_plugins.sweeper.EvsysSweeper"
EVOLVE_SWEEPER = "hydra_plugins.evsys_plugins.evolve_sweeper.EvolveSweeper"
"""evsys's evolutionary sweeper: its arms are proposed as it runs, its search space checked here."""

SWEEPER_PREFLIGHTS = Registry(
    "sweeper pre-flight", "sweeper_preflights", builtin_modules=("evsys.evolve.context",)
)
"""A sweeper's target → its check, ``(overrides, config_name) -> None``, raising one
ConfigError with every problem of the sweep's settings."""
