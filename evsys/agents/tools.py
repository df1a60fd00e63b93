"""Tool calls in a model's text: ``<tool>NAME: ARGUMENT</tool>``, and running them.

One plain-text format every model can write (a tiny model has no tool-calling template), and
one an environment describes in its own prompt with :func:`describe_tools`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from evsys.agents.protocol import StepResult, Tool

TOOL_CALL = re.compile(r"<tool>\s*([A-Za-z_][\w.-]*)\s*:(.*?)</tool>", re.DOTALL)
"""``<tool>calculator: 2 + 3</tool>``: group 1 the tool's name, group 2 its argument."""


def find_tool_call(action: str) -> tuple[str, str] | None:
    """The first tool call in ``action`` as ``(name, argument)``, or None."""
    match = TOOL_CALL.search(action)
    return (match.group(1), match.group(2).strip()) if match else None


def call_tool(tools: Sequence[Tool], action: str) -> StepResult | None:
    """Run the tool ``action`` calls and return its result as a ``tool`` observation; None when
    ``action`` calls no tool. An unknown tool or a tool that raises is the model's mistake, so
    it is told what went wrong, as its observation, and the episode goes on."""
    call = find_tool_call(action)
    if call is None:
        return None
    name, argument = call
    by_name = {tool.name: tool for tool in tools}
    if name not in by_name:
        known = ", ".join(by_name) or "none"
        return StepResult(f"error: no tool named {name!r} (tools: {known})", role="tool")
    try:
        result = by_name[name].fn(argument)
    except (ArithmeticError, ValueError, TypeError) as exc:
        return StepResult(f"error: {exc}", role="tool", info={"tool": name})
    return StepResult(str(result), role="tool", info={"tool": name})


def describe_tools(tools: Sequence[Tool]) -> str:
    """How to call ``tools``, for an environment's opening prompt."""
    lines = [f"- {tool.name}: {tool.description}" for tool in tools]
    return "Tools (call one with <tool>NAME: ARGUMENT</tool>):\n" + "\n".join(lines)
