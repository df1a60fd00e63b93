"""A tool-use task: the model calls a calculator, reads its result, then answers.

Tasks are prompt/answer rows (``data=arithmetic``): the question is the row's prompt, the
expected answer its ``answer`` (or final assistant turn). The episode ends when the model
answers with ``<answer>…</answer>``: reward 1 when the answer is right, else 0.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from typing import Any

from pydantic import Field

from evsys.agents.protocol import Message, StepResult, Tool
from evsys.agents.tools import call_tool, describe_tools
from evsys.answers import ANSWER_TAG, extract_answer, normalize
from evsys.config import Strict
from evsys.protocols import Row
from evsys.registry import register_environment
from evsys.rows import assistant_text, prompt_text

_OPERATORS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_MAX_DIGITS = 30  # larger results are refused: a model cannot hang the run on 9**9**9
_QUESTION = re.compile(r"(-?\d+(?:\.\d+)?(?:\s*[-+*/%]\s*-?\d+(?:\.\d+)?)+)")


def calculate(expression: str) -> str:
    """The value of an arithmetic expression: numbers, + - * / // %, parentheses."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot read {expression!r} as arithmetic") from None
    value = _evaluate(tree.body)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        value = _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        value = _OPERATORS[type(node.op)](_evaluate(node.operand))
    else:
        raise ValueError(f"only numbers and + - * / // % are allowed, not {ast.unparse(node)!r}")
    if abs(value) >= 10**_MAX_DIGITS:
        raise ValueError("the result is too large")
    return value


CALCULATOR = Tool("calculator", "evaluates an arithmetic expression, e.g. 12 * (3 + 4)", calculate)


@register_environment("calculator")
class CalculatorEnv:
    """Answer an arithmetic question, with a calculator tool to call first."""

    class Config(Strict):
        system_prompt: str = Field(
            "Answer the question. You may call the calculator first.\n{tools}\n"
            "Reply with <answer>NUMBER</answer> when you know the result.",
            description="The opening system message; `{tools}` becomes the list of tools and "
            "how to call them.",
        )

    tools = (CALCULATOR,)

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)
        self.last_result: str | None = None

    def reset(self, task: Row) -> list[Message]:
        self.question, self.expected = prompt_text(task), assistant_text(task)
        self.rng = random.Random(self.question)
        system = self.cfg.system_prompt.replace("{tools}", describe_tools(self.tools))
        return [{"role": "system", "content": system}, {"role": "user", "content": self.question}]

    def step(self, action: str) -> StepResult:
        if ANSWER_TAG.search(action):  # an answer ends the episode, even beside a tool call
            right = normalize(extract_answer(action)) == normalize(extract_answer(self.expected))
            return StepResult(reward=float(right), done=True)
        called = call_tool(self.tools, action)
        if called is not None:
            if not called.observation.startswith("error"):
                self.last_result = called.observation
            return called
        return StepResult(
            "Call the calculator with <tool>calculator: EXPRESSION</tool>, or reply with "
            "<answer>NUMBER</answer>."
        )

    def candidate_actions(self) -> dict[str, str]:
        """For the mock backend's toy policy: call the tool on the question's expression, or
        answer (with the tool's result once there is one, else a guess)."""
        found = _QUESTION.search(self.question)
        expression = found.group(1) if found else self.question
        guess = str(self.rng.randint(0, 100))
        answer = self.last_result if self.last_result is not None else guess
        return {
            "call_calculator": f"<tool>calculator: {expression}</tool>",
            "answer": f"<answer>{answer}</answer>",
        }
