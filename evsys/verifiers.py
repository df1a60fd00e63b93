"""Built-in verifiers: score one completion, for RL rewards and eval correctness.

Each returns a reward of 0.0 or 1.0 and an ``info`` dict saying what was compared, so a reward
can be explained after the fact. ``register_verifier_fn`` turns a plain scoring function into a
verifier (the in-process verifiers of reference §9 call such functions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from evsys.answers import ANSWER_TAG, extract_answer, normalize, target_answer
from evsys.config import Strict
from evsys.protocols import VerificationResult
from evsys.registry import VERIFIERS, register_verifier

F = TypeVar("F", bound=Callable[..., Any])


@register_verifier("format_only")
class FormatOnly:
    """Reward 1 when the completion holds an ``<answer>…</answer>`` with non-blank content."""

    class Config(Strict):
        pass

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def verify(self, *, prompt: str, completion: str, target: Any) -> VerificationResult:
        answers = [a.strip() for a in ANSWER_TAG.findall(completion)]
        ok = any(answers)
        info = {"has_answer_tag": bool(answers), "extracted": answers[-1] if answers else None}
        return VerificationResult(reward=float(ok), info=info)


@register_verifier("exact_match")
class ExactMatchVerifier:
    """Reward 1 when the extracted answer equals the target's answer (both normalized)."""

    class Config(Strict):
        pass

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def verify(self, *, prompt: str, completion: str, target: Any) -> VerificationResult:
        extracted, expected = extract_answer(completion), target_answer(target)
        ok = normalize(extracted) == normalize(expected)
        return VerificationResult(float(ok), {"extracted": extracted, "expected": expected})


@register_verifier("contains")
class ContainsVerifier:
    """Reward 1 when the target's answer appears anywhere in the (normalized) completion."""

    class Config(Strict):
        case_sensitive: bool = Field(
            False, description="Compare with case preserved. False: casefold both sides first."
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def verify(self, *, prompt: str, completion: str, target: Any) -> VerificationResult:
        casefold = not self.cfg.case_sensitive
        expected = normalize(target_answer(target), casefold=casefold)
        # An empty answer is a substring of everything: reward it and any completion passes.
        ok = bool(expected) and expected in normalize(completion, casefold=casefold)
        return VerificationResult(float(ok), {"expected": expected})


class _AnyParams(BaseModel):
    """Params of a function verifier: whatever keywords the function takes, passed through."""

    model_config = ConfigDict(extra="allow")


def register_verifier_fn(name: str, *, overwrite_ok: bool = False) -> Callable[[F], F]:
    """Register ``fn(completion, expected, **params) -> float | bool`` as verifier ``name``.

    The spec's ``params`` are passed to ``fn`` as keywords and ``expected`` is the row's target as
    is. The function is returned unchanged; the registered class exposes it as ``.fn``::

        @register_verifier_fn("tool_call")
        def tool_call(completion, expected, strict=False):
            return extract_answer(completion) == expected["answer"]
    """

    def decorator(fn: F) -> F:
        def __init__(self: Any, **params: Any) -> None:
            self.cfg = self.Config(**params)

        def verify(self: Any, *, prompt: str, completion: str, target: Any) -> VerificationResult:
            score = fn(completion, target, **self.cfg.model_extra)
            if not hasattr(score, "__float__"):  # numpy scalars pass; None and str do not
                raise TypeError(
                    f"verifier function '{name}' ({fn.__qualname__}) must return a float or "
                    f"bool, got {type(score).__name__}: {score!r}"
                )
            return VerificationResult(reward=float(score), info={"fn": fn.__qualname__})

        cls = type(
            f"{fn.__name__}_verifier",
            (),
            {
                "__doc__": fn.__doc__,
                "__module__": fn.__module__,
                "__qualname__": f"{fn.__qualname__}_verifier",
                "Config": _AnyParams,
                "fn": staticmethod(fn),
                "__init__": __init__,
                "verify": verify,
            },
        )
        VERIFIERS.add(name, cls, overwrite_ok=overwrite_ok)
        return fn

    return decorator
