"""The toy model the mock backend trains: a bounded memory of (prompt → answer) with confidences."""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from evsys.files import write_text_atomically

CHECKPOINT_FILE = "mock_policy.json"
_WORD = re.compile(r"[a-z0-9]+")
# A worked example in a system prompt, one per line: `<prompt> => <answer>`.
_EXAMPLE_LINE = re.compile(r"^\s*(?:[-*]\s+)?(?P<prompt>\S.*?)\s*=>\s*(?P<answer>\S.*?)\s*$", re.M)


@functools.lru_cache(maxsize=1 << 16)
def words(text: str) -> frozenset[str]:
    # Cached: recall() compares a prompt with every remembered one, at every training row.
    return frozenset(_WORD.findall(text.lower()))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two word sets."""
    return len(a & b) / len(a | b) if a or b else 0.0


def in_context_examples(text: str) -> dict[str, str]:
    """The worked examples a system prompt shows, ``prompt → answer``: each line written
    ``<prompt> => <answer>``. The mock model learns them in context (see :meth:`MockPolicy.reading`)."""
    return {m["prompt"]: m["answer"] for m in _EXAMPLE_LINE.finditer(text)}


def stable_seed(*parts: object) -> int:
    """A seed from values, stable across processes (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


@dataclass
class MockPolicy:
    capacity: int
    """How many prompts it can remember (grows with LoRA rank)."""
    answers: dict[str, str] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)
    """Probability of giving the remembered answer, per prompt."""
    min_similarity: float = 0.2

    def recall(self, prompt: str) -> tuple[str | None, float]:
        """The remembered prompt closest to ``prompt``, and how close it is."""
        query, best, best_sim = words(prompt), None, 0.0
        for known in self.answers:
            sim = similarity(query, words(known))
            if sim > best_sim:
                best, best_sim = known, sim
        return (best, best_sim) if best_sim >= self.min_similarity else (None, best_sim)

    def reading(self, examples: dict[str, str]) -> MockPolicy:
        """This policy with ``examples`` in its context (in-context learning): it answers from them
        as surely as from what it memorised, a prompt of its own context winning over one of its
        memory; its memory is left as it was."""
        return MockPolicy(
            capacity=self.capacity + len(examples),
            answers={**self.answers, **examples},
            confidence={**self.confidence, **dict.fromkeys(examples, 1.0)},
            min_similarity=self.min_similarity,
        )

    def learn(self, prompt: str, answer: str, confidence: float, rng: random.Random) -> None:
        if prompt not in self.answers and len(self.answers) >= self.capacity:
            del self.answers[forgotten := rng.choice(sorted(self.answers))]
            self.confidence.pop(forgotten, None)
        self.answers[prompt] = answer
        self.confidence[prompt] = confidence

    def generate(self, prompt: str, rng: random.Random, greedy: bool) -> str:
        known, _ = self.recall(prompt)
        if known is None:
            return "I am not sure."
        p = self.confidence.get(known, 1.0)
        if (p >= 0.5) if greedy else (rng.random() < p):
            return self.answers[known]
        return f"<answer>{_wrong(self.answers[known], rng)}</answer>"

    # -- checkpoints --------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "capacity": self.capacity,
            "answers": self.answers,
            "confidence": self.confidence,
        }
        write_text_atomically(directory / CHECKPOINT_FILE, json.dumps(payload, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> MockPolicy:
        path = Path(directory)
        path = path if path.is_file() else path / CHECKPOINT_FILE
        payload = json.loads(path.read_text())
        return cls(payload["capacity"], payload["answers"], payload["confidence"])


def _wrong(answer: str, rng: random.Random) -> str:
    inner = re.sub(r"</?answer>", "", answer).strip()
    if inner.lstrip("-").isdigit():
        return str(int(inner) + rng.choice([-2, -1, 1, 2, 10]))
    return inner[::-1] or "?"
