"""Generate the arithmetic dataset: small additions and subtractions with their answers.

Deterministic (seeded), standard library only. Rewrites train.jsonl and test.jsonl beside this
file, or in --out:

    python data/arithmetic/make.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 4321
N_TRAIN = 200
N_TEST = 50
LOW, HIGH = 1, 99


def all_problems() -> list[tuple[int, str, int]]:
    """Every (a, op, b) in range; subtractions keep a >= b so answers are never negative."""
    adds = [(a, "+", b) for a in range(LOW, HIGH + 1) for b in range(LOW, HIGH + 1)]
    subs = [(a, "-", b) for a in range(LOW, HIGH + 1) for b in range(LOW, a + 1)]
    return adds + subs


def row(a: int, op: str, b: int) -> dict:
    answer = a + b if op == "+" else a - b
    return {"prompt": f"What is {a} {op} {b}?", "answer": str(answer)}


def build(rng: random.Random) -> tuple[list[dict], list[dict]]:
    # Sampling without replacement keeps every test problem out of train.
    picked = rng.sample(all_problems(), N_TRAIN + N_TEST)
    rows = [row(*p) for p in picked]
    return rows[:N_TRAIN], rows[N_TRAIN:]


def write(rows: list[dict], path: Path, split: str) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i, r in enumerate(rows):
            handle.write(json.dumps({"id": f"arithmetic-{split}-{i:03d}", **r}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    train, test = build(random.Random(SEED))
    write(train, out / "train.jsonl", "train")
    write(test, out / "test.jsonl", "test")
    print(f"wrote {len(train)} train and {len(test)} test rows to {out}")


if __name__ == "__main__":
    main()
