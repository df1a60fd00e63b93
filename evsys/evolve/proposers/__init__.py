"""Who proposes the next generation. A proposer only proposes: the loop validates, pre-flights,
launches and tells it what came of each arm.

Every proposer has:

- ``replay(arms)``: rebuild its state from the stored arms (a resumed sweep);
- ``propose(generation, names, history) -> list[Proposal]``: a proposal per name (an LLM may
  give fewer or more); the loop admits the legal ones and names them in the order admitted;
- ``observe(arm, proposal)``: an arm's result (``proposal`` is None for an arm proposed by an
  earlier, interrupted session);
- ``refused(proposal, problems, earlier=None)``: a proposal that was not launched — illegal, or
  a repeat of the ``earlier`` arm;
- ``rounds``: how many times the loop asks it to fill one generation.
"""

from __future__ import annotations

from typing import Any

from evsys.errors import ConfigError, Problem

# Proposal lived here first; its name stays importable from this package.
from evsys.evolve.proposal import Proposal as Proposal


def make_proposer(settings: Any, context: Any) -> Any:
    """The proposer ``settings.proposer`` names, for the sweep described by ``context``."""
    kind, params = settings.proposer.kind, dict(settings.proposer.params)
    try:
        if kind == "optuna":
            from evsys.evolve.proposers.optuna import OptunaProposer

            return OptunaProposer(params, context, seed=settings.seed)
        from evsys.evolve.proposers.llm import LLMProposer

        return LLMProposer(params, context, seed=settings.seed)
    except ValueError as exc:  # pydantic's ValidationError is one
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            Problem(
                path="hydra.sweeper.proposer.params",
                message=str(exc).splitlines()[0] + ": " + " ".join(str(exc).splitlines()[1:3]),
                value=params,
            )
        ) from None
