"""Usage accounting of hosted clients: tokens in and out, latency and cost of every call.

A client keeps a :class:`UsageMeter`; whoever scores with it (a run's eval, a benchmark, a
baseline, ``evsys eval model``, a judge) reads the calls made since a mark as metrics:
``cost_usd`` (from the price table, ``prices.yaml``, or the client's ``price``),
``latency_p50_s``, ``latency_p95_s``, ``tokens_in`` and ``tokens_out``. A call whose response
counted no tokens (an OpenAI-compatible server that returns no ``usage``) has a latency, but no
tokens and no cost: its calls report neither, rather than a made-up 0. A refused call (a refusal,
a content filter, a safety block) is metered like any other: it was answered, and paid for;
``refused`` counts the samples the model declined.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import Field

from evsys.config import Strict

log = logging.getLogger(__name__)

USAGE_METRICS = (
    "cost_usd",
    "latency_p50_s",
    "latency_p95_s",
    "tokens_in",
    "tokens_out",
    "refused",
)
"""The metrics a metered client's calls give, under the prefix of what they scored."""
PRICES_FILE = Path(__file__).with_name("prices.yaml")


class Price(Strict):
    """What one model costs, in USD per million tokens."""

    input_usd_per_mtok: float = Field(ge=0, description="USD per million prompt tokens.")
    output_usd_per_mtok: float = Field(ge=0, description="USD per million generated tokens.")

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_usd_per_mtok + tokens_out * self.output_usd_per_mtok) / 1e6


@cache
def _price_table() -> dict[str, dict[str, Price]]:
    import yaml

    table = yaml.safe_load(PRICES_FILE.read_text())
    return {
        vendor: {
            model: Price(input_usd_per_mtok=p["input"], output_usd_per_mtok=p["output"])
            for model, p in models.items()
        }
        for vendor, models in table.items()
    }


def lookup_price(vendor: str, model: str) -> Price | None:
    """The listed price of ``model``: its own entry, else the longest entry that it extends
    with a ``-`` suffix (a dated or pinned version); None when the table has none."""
    prices = _price_table().get(vendor, {})
    if model in prices:
        return prices[model]
    # models/gemini-2.5-flash (the API's resource name) is gemini-2.5-flash
    name = model.rsplit("/", 1)[-1]
    candidates = [m for m in prices if name == m or name.startswith(m + "-")]
    return prices[max(candidates, key=len)] if candidates else None


def lookup_any_price(model: str) -> Price | None:
    """The listed price of ``model`` under any vendor of the table (for a client that can reach
    any vendor's models, such as ``openai_compatible`` behind a proxy); None when none lists it."""
    for vendor in _price_table():
        price = lookup_price(vendor, model)
        if price is not None:
            return price
    return None


@dataclass(frozen=True)
class CallUsage:
    tokens_in: int | None
    tokens_out: int | None
    """None: the response did not say how many tokens it took."""
    latency_s: float
    cost_usd: float | None
    """None: the model has no price, or the call's tokens are unknown."""
    refused: int = 0
    """Samples of the call the model declined (a refusal, a content filter, a safety block)."""


class UsageMeter:
    """The calls of one client; thread-safe (a client answers many prompts at once)."""

    def __init__(self, price: Price | None, model: str = ""):
        self.price, self.model = price, model
        self._calls: list[CallUsage] = []
        self._lock = threading.Lock()

    def record(
        self, tokens_in: int | None, tokens_out: int | None, latency_s: float, refused: int = 0
    ) -> None:
        """One answered call; ``tokens_in``/``tokens_out`` None when the response gave none;
        ``refused``: how many of its samples the model declined."""
        cost = None
        if self.price is not None and tokens_in is not None and tokens_out is not None:
            cost = self.price.cost(tokens_in, tokens_out)
        with self._lock:
            self._calls.append(CallUsage(tokens_in, tokens_out, latency_s, cost, refused))

    def mark(self) -> int:
        """A position to read the calls made after it from (:meth:`calls`)."""
        with self._lock:
            return len(self._calls)

    def calls(self, since: int = 0) -> list[CallUsage]:
        with self._lock:
            return self._calls[since:]


def judge_usage(metrics: Iterable[Any], prefix: str) -> dict[str, float]:
    """:func:`summarize` of the calls that every metric asking a judge model made (its
    ``judge_calls()``: pass_rate on llm_judge tasks), together; empty when none asked one."""
    return summarize(
        (call for metric in metrics for call in getattr(metric, "judge_calls", list)()), prefix
    )


def summarize(calls: Iterable[CallUsage], prefix: str | None = None) -> dict[str, float]:
    """``{<prefix>/cost_usd, …/latency_p50_s, …/latency_p95_s, …/tokens_in, …/tokens_out,
    …/refused}`` of ``calls``; empty when there were none; no ``cost_usd`` when a call's model
    has no price or its tokens are unknown, no ``tokens_in``/``tokens_out`` when some call's
    response did not give them (a partial sum would undercount)."""
    calls = list(calls)
    if not calls:
        return {}
    latencies = sorted(c.latency_s for c in calls)
    out = {
        "latency_p50_s": quantile(latencies, 0.5),
        "latency_p95_s": quantile(latencies, 0.95),
        "refused": float(sum(c.refused for c in calls)),
    }
    if all(c.tokens_in is not None for c in calls):
        out["tokens_in"] = float(sum(c.tokens_in or 0 for c in calls))
    if all(c.tokens_out is not None for c in calls):
        out["tokens_out"] = float(sum(c.tokens_out or 0 for c in calls))
    if all(c.cost_usd is not None for c in calls):
        out = {"cost_usd": sum(c.cost_usd or 0.0 for c in calls), **out}
    return {f"{prefix}/{k}" if prefix else k: v for k, v in out.items()}


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated linearly between neighbours."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def meter_of(client: Any) -> UsageMeter | None:
    meter = getattr(client, "usage", None)
    return meter if isinstance(meter, UsageMeter) else None


def mark(client: Any) -> int:
    """Where ``client``'s meter stands now (0 for a client without one)."""
    meter = meter_of(client)
    return meter.mark() if meter is not None else 0


def usage_since(client: Any, since: int, prefix: str | None = None) -> dict[str, float]:
    """The usage metrics of ``client``'s calls after ``since``; {} for a client without a meter."""
    meter = meter_of(client)
    return summarize(meter.calls(since), prefix) if meter is not None else {}


def reports_usage(kind: str) -> bool:
    """Whether the inference client registered as ``kind`` keeps a usage meter."""
    from evsys.registry import INFERENCE_CLIENTS

    return kind in INFERENCE_CLIENTS and bool(
        getattr(INFERENCE_CLIENTS.get(kind), "reports_usage", False)
    )


def usage_names(prefix: str) -> list[str]:
    return [f"{prefix}/{name}" for name in USAGE_METRICS]


_warned: set[tuple[str, str]] = set()


def warn_unpriced(vendor: str, model: str) -> None:
    """Say once per model that its calls have no cost."""
    if (vendor, model) in _warned:
        return
    _warned.add((vendor, model))
    log.warning(
        "%s: no price for model %r in the price table; its calls report no cost_usd (give the "
        "client `price: {input_usd_per_mtok: …, output_usd_per_mtok: …}`)",
        vendor,
        model,
    )
