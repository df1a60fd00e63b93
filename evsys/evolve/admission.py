"""Which proposals of a round become arms: confined, composed, validated, not repeats.

Each proposal is first read against the search space as data (:mod:`evsys.evolve.confine`); one
that sets anything else, or a value outside its dimension, is refused there — recorded with why
(``evolve_illegal``), fed back to the proposer, never composed. The rest get the sweep's fixed
overrides plus lines written from their parsed values and are composed and validated exactly like
a hand-written sweep's arms (:func:`evsys.sweep.plan.preflight`). A legal proposal is not launched
when it repeats an earlier arm's config or comes past what the round asked for; it is recorded
(``evolve_dropped``) with the reason.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from evsys.errors import Problem
from evsys.evolve.confine import as_written, confine, override_lines
from evsys.evolve.store import StoredArm

log = logging.getLogger(__name__)


def arm_name(generation: int, number: int) -> str:
    return f"g{generation}_{number:03d}"


def admit(
    evolution: Any, generation: int, proposals: list[Any], wanted: int
) -> list[tuple[Any, StoredArm]]:
    """The first ``wanted`` legal proposals of ``evolution``'s round, as stored arms named in the
    order admitted. ``evolution`` is the loop: its context, proposer, arms and checked arms."""
    from evsys.sweep.plan import preflight

    context, proposer, arms = evolution.context, evolution.proposer, evolution.arms
    readable = []
    for proposal in proposals:
        confined = confine(proposal.overrides, context.dimensions)
        if confined.problems:
            _refuse(evolution, generation, proposal, confined.problems)
            continue
        proposal.params = confined.values  # the parsed values, not the proposer's text
        readable.append((proposal, arm_overrides(context, arms, proposal, confined)))
    if not readable:
        return []
    checked = preflight([lines for _, lines in readable], config_name=context.config_name)
    # searched config → the arm that has it (None: one admitted from this same batch)
    seen: dict[str | None, StoredArm | None] = {a.proposal.get("searched"): a for a in arms}
    admitted: list[tuple[Any, StoredArm]] = []
    for (proposal, lines), arm in zip(readable, checked, strict=True):
        if arm.problems:
            _refuse(evolution, generation, proposal, [_problem_text(p) for p in arm.problems])
            continue
        if len(admitted) >= wanted:
            reason = f"the generation was full: {wanted} arm(s) asked for in this round"
            context.record_dropped(generation, proposal.overrides, reason)
            continue
        searched = _searched_hash(arm)
        if searched in seen:
            earlier = seen[searched]
            which = earlier.name if earlier else "another proposal of this generation"
            reason = f"the same config as an earlier arm ({which})"
            context.record_dropped(generation, proposal.overrides, reason)
            proposer.refused(proposal, [reason], earlier=earlier)
            continue
        seen[searched] = None
        number = len(arms) + len(admitted)
        proposal.name = arm_name(generation, number)
        evolution.checked[proposal.name] = arm  # composed and validated: launched as it is
        stored = StoredArm(
            number=number,
            name=proposal.name,
            generation=generation,
            overrides=lines,
            params=proposal.params,
            parents=proposal.parents,
            proposal={**proposal.data, "config_hash": arm.config_hash, "searched": searched},
        )
        admitted.append((proposal, stored))
    return admitted


def _refuse(evolution: Any, generation: int, proposal: Any, problems: list[str]) -> None:
    log.warning("evolve: refused %s: %s", as_written(proposal.overrides), problems)
    evolution.context.count_illegal(generation, proposal.overrides, problems)
    evolution.proposer.refused(proposal, problems)


def arm_overrides(context: Any, arms: list[StoredArm], proposal: Any, confined: Any) -> list[str]:
    """The sweep's fixed overrides, the proposal's values (winning over a fixed line of the same
    key) and the lineage: ``parent_experiment_id`` is the first parent's run id."""
    keys = set(confined.values)
    base = [line for line in context.base if line.partition("=")[0].lstrip("+~") not in keys]
    runs = {a.name: a.run_id for a in arms}
    parent = next((runs[p] for p in proposal.parents if runs.get(p)), None)
    lineage = [f"parent_experiment_id={json.dumps(parent)}"] if parent else []
    return [*base, *override_lines(confined, context.dimensions), *lineage]


def _searched_hash(arm: Any) -> str:
    """The arm's config without its lineage: the same config proposed from another parent is
    the same point of the search, not a new one."""
    from evsys.run.record import config_hash, redact

    config = arm.config.model_dump(mode="json")
    return config_hash(redact({k: v for k, v in config.items() if k != "parent_experiment_id"}))


def _problem_text(problem: Problem) -> str:
    """A validation problem for the records and the next prompt: where and what, without the
    composed value (the proposal's own lines are quoted beside it, as written)."""
    expected = f" (expected {problem.expected})" if problem.expected else ""
    return f"{problem.path}: {problem.message}{expected}"
