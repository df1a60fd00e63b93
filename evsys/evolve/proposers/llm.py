"""The LLM proposer: a model on any registered inference client proposes the next configs.

Its prompt holds the whole legal space (the JSON schema of ``evsys schema --all``), the sweep's
fixed overrides and search space, the experiment's hypothesis and objectives, the best arms so
far (overrides, metrics, errors) and the proposals of the last round that were refused, with
why. It must answer one JSON object::

    {"proposals": [{"overrides": ["algorithm.params.learning_rate=0.0003", …],
                    "parents": ["g0_001"], "why": "…"}]}

The answer is parsed strictly: anything but that shape is refused as a whole, counted as one
illegal proposal and quoted back in the next prompt. Every proposal is then confined to the search
space and validated by the loop (:mod:`evsys.evolve.admission`); an illegal one is never launched,
and its problems, quoting it as written, go into the next prompt. Proposals past twice the arms
asked for are recorded as dropped. An arm's parents are the earlier arms the model names; none
when it names none.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evsys.evolve.proposal import Proposal
from evsys.evolve.store import COMPLETE, StoredArm

_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S)
MAX_FEEDBACK = 12  # refused proposals quoted back, most recent first


class ClientSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)


class LLMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client: ClientSpec = Field(description="The inference client: {kind, params}.")
    max_tokens: int = Field(2048, ge=16)
    temperature: float = Field(0.7, ge=0)
    show_arms: int = Field(8, ge=1, description="Best arms shown to the model as parents.")
    rounds: int = Field(3, ge=1, description="Asks per generation to fill it with legal arms.")
    include_schema: bool = Field(True, description="Put the whole-space JSON schema in the prompt.")


class IllegalAnswer(ValueError):
    """The model's answer is not the JSON the prompt asked for."""


class LLMProposer:
    def __init__(self, params: dict[str, Any], context: Any, seed: int | None = None):
        from evsys.registry import INFERENCE_CLIENTS

        self.cfg = LLMParams(**params)
        self.context = context
        self.client = INFERENCE_CLIENTS.build(self.cfg.client.kind, self.cfg.client.params)
        self.feedback: list[str] = []
        self.prompts: list[str] = []

    def replay(self, arms: list[StoredArm]) -> None:
        """Nothing to rebuild: every prompt is written from the stored arms."""

    def propose(
        self, generation: int, names: list[str], history: list[StoredArm]
    ) -> list[Proposal]:
        prompt = self.prompt(generation, len(names), history)
        self.prompts.append(prompt)
        answer = self.client.generate(
            prompt=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": prompt},
            ],
            max_tokens=self.cfg.max_tokens,
            temperature=self.cfg.temperature,
        )
        known = {arm.name for arm in history}
        try:
            entries = parse_answer(answer)
        except IllegalAnswer as exc:
            self.context.count_illegal(generation, {"answer": answer[:2000]}, [str(exc)])
            self.feedback.append(f"your last answer was refused as a whole: {exc}")
            return []
        cap = 2 * len(names)
        for entry in entries[cap:]:
            reason = f"past the {cap} proposals read per answer ({len(names)} asked for)"
            self.context.record_dropped(generation, entry["overrides"], reason)
        proposals = []
        extra = [f"{names[-1]}+{i}" for i in range(1, len(entries))] if names else []
        for name, entry in zip([*names, *extra], entries[:cap], strict=False):
            proposals.append(
                Proposal(
                    name=name,
                    overrides=entry["overrides"],
                    parents=[p for p in entry["parents"] if p in known],
                    data={"why": entry["why"]},
                    rationale=entry["why"],
                )
            )
        return proposals

    def observe(self, arm: StoredArm, proposal: Proposal | None) -> None:
        """Nothing to update: the next prompt reads the arm from the history."""

    @property
    def rounds(self) -> int:
        return self.cfg.rounds

    def refused(
        self, proposal: Proposal, problems: list[str], earlier: StoredArm | None = None
    ) -> None:
        self.feedback.append(
            f"REFUSED {json.dumps(proposal.overrides)}: " + "; ".join(problems)[:600]
        )

    # -- the prompt ---------------------------------------------------------------------------

    def prompt(self, generation: int, count: int, history: list[StoredArm]) -> str:
        context = self.context
        objectives = ", ".join(
            f"{o.metric} ({'higher' if o.direction == 'max' else 'lower'} is better)"
            for o in context.objectives
        )
        parts = [
            f"Hypothesis: {context.hypothesis or '(none given)'}",
            f"Objectives: {objectives}",
            f"Generation {generation}: propose {count} new experiment configs.",
            "Fixed overrides of every arm: " + json.dumps(context.base),
        ]
        if context.dimensions:
            parts.append(
                "Search space (a proposal may set only these keys, one value each):\n"
                + "\n".join(f"- {d.describe()}" for d in context.dimensions)
            )
        shown = context.best_arms(history, self.cfg.show_arms)
        failed = [a for a in history if a.state != COMPLETE][-3:]
        if shown or failed:
            parts.append("Parent arms so far (best first, then recent failures):")
            for arm in [*shown, *[a for a in failed if a not in shown]]:
                parts.append("- " + json.dumps(_arm_view(arm, context)))
        if self.feedback:
            parts.append("Refused proposals (fix these mistakes):")
            parts += [f"- {line}" for line in self.feedback[-MAX_FEEDBACK:][::-1]]
        if self.cfg.include_schema:
            parts.append("The legal space (JSON schema of every group and field):")
            parts.append(json.dumps(context.schema(), separators=(",", ":")))
        parts.append(ANSWER_FORMAT)
        return "\n\n".join(parts)


SYSTEM = (
    "You design machine-learning experiments. Each experiment is a list of overrides "
    "(dotted.key=value) on a base config; each must set one key of the search space given, to "
    "a plain value inside its range. Answer with JSON only."
)
ANSWER_FORMAT = (
    'Answer with one JSON object: {"proposals": [{"overrides": ["key=value", ...], '
    '"parents": ["<arm name>", ...], "why": "<one sentence>"}]}. Only the search space\'s keys; '
    "plain values (no ${...}, no sweep expressions, no commas, interval, choice or range)."
)


def parse_answer(answer: str) -> list[dict[str, Any]]:
    """The proposals of a model's answer; IllegalAnswer when it is not exactly the asked shape."""
    fenced = _FENCE.search(answer)
    text = fenced.group(1) if fenced else answer.strip()
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise IllegalAnswer(f"not a JSON object ({exc})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("proposals"), list):
        raise IllegalAnswer('expected {"proposals": [...]}')
    entries = []
    for position, entry in enumerate(payload["proposals"]):
        where = f"proposals[{position}]"
        if not isinstance(entry, dict) or set(entry) - {"overrides", "parents", "why"}:
            raise IllegalAnswer(f"{where}: expected an object with overrides, parents, why")
        overrides = entry.get("overrides")
        if not isinstance(overrides, list) or not all(
            isinstance(line, str) and "=" in line for line in overrides
        ):
            raise IllegalAnswer(f"{where}.overrides: expected a list of 'key=value' strings")
        parents = entry.get("parents", [])
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise IllegalAnswer(f"{where}.parents: expected a list of arm names")
        why = entry.get("why", "")
        entries.append({"overrides": overrides, "parents": parents, "why": str(why)})
    return entries


def _arm_view(arm: StoredArm, context: Any) -> dict[str, Any]:
    varied = [line for line in arm.overrides if line not in context.base]  # base: said once
    view: dict[str, Any] = {
        "arm": arm.name,
        "generation": arm.generation,
        "overrides": varied,
    }
    if arm.values is not None:
        view["metrics"] = {
            o.metric: v for o, v in zip(context.objectives, arm.values, strict=False)
        }
    if arm.error:
        view["error"] = arm.error[:400]
    view["status"] = arm.state
    return view
