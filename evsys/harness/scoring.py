"""``score_rows``: completions against expected answers, per row and in aggregate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from evsys.answers import extract_answer
from evsys.clients import usage
from evsys.config import MetricSpec
from evsys.errors import ConfigError, DataError
from evsys.harness.aliases import AliasMatcher, row_aliases
from evsys.harness.prompts import extract_predicted_slug
from evsys.metrics import pass_at_k_estimate
from evsys.registry import METRICS
from evsys.rows import assistant_text, indices_by_value
from evsys.run.evaluation import metric_name

Row = dict[str, Any]
EXTRACTORS: dict[str, Callable[[str | None], str | None]] = {
    "answer": lambda text: None if text is None else extract_answer(text),
    "slug": extract_predicted_slug,
}


@dataclass
class ScoredRows:
    records: list[Row]
    """One per row: expected answer, every completion, what was read from it, how it matched."""
    metrics: dict[str, float]


@dataclass
class BuiltMetric:
    spec: MetricSpec
    metric: Any


def build_metrics(specs: Sequence[MetricSpec], path: str = "metrics") -> list[BuiltMetric]:
    """Each registered metric of ``specs``, built once: bad input (an unknown kind, bad params,
    a judge client's) is one ConfigError naming each problem before any call is made, and a
    judge's verdicts are asked once for the headline and the breakdowns."""
    check_metrics(specs, path)
    return [BuiltMetric(spec, METRICS.build(spec.kind, spec.params)) for spec in specs]


def check_metrics(specs: Sequence[MetricSpec], path: str = "metrics") -> None:
    """One ConfigError naming every problem of ``specs`` (``<path>[<i>].…``), if any."""
    from evsys.validation import envelope_problems

    problems = [p for i, spec in enumerate(specs) for p in envelope_problems(spec, (path, i))]
    if problems:
        raise ConfigError(problems, header="bad metrics")


def judge_usage(built: Sequence[BuiltMetric], prefix: str = "judge") -> dict[str, float]:
    """``{<prefix>/cost_usd, …}``: the calls every metric that asks a judge model (pass_rate on
    llm_judge tasks) made, together; empty when no judge was asked."""
    return usage.judge_usage((entry.metric for entry in built), prefix)


def expected_answer(row: Row, index: int) -> str:
    """The answer a row expects: ``answer``, else the answer in its final assistant turn."""
    if row.get("answer") is not None:
        return str(row["answer"])
    try:
        return extract_answer(assistant_text(row))
    except DataError:
        raise DataError(
            f"row {index} (id {row.get('id')!r}) has no expected answer: give it 'answer' or a "
            "final assistant turn"
        ) from None


def score_rows(
    rows: Sequence[Row],
    samples: Sequence[Sequence[str | None]],
    *,
    matcher: AliasMatcher | None = None,
    secondary: AliasMatcher | None = None,
    extract: str = "answer",
    pass_at: Sequence[int] = (1,),
    metrics: Sequence[MetricSpec] = (MetricSpec(kind="exact_match"),),
    breakdown_keys: Sequence[str] = (),
    built: Sequence[BuiltMetric] | None = None,
) -> ScoredRows:
    """Score ``samples[i]`` (the completions for ``rows[i]``; None for a call that failed).

    ``pass@k`` counts a completion right when its extracted answer is the expected answer or an
    alias of it (``matcher``, and the row's own ``aliases``); ``secondary_pass@k`` also accepts
    ``secondary``'s names. Registered ``metrics`` see each row's first completion. Every metric
    is also broken down by each of ``breakdown_keys``: ``<metric>/<key>=<value>``. A judge
    model's usage is ``judge/cost_usd``, ``judge/latency_p50_s``, … ``built``: the metrics
    already built (:func:`build_metrics`), in place of ``metrics``.
    """
    if len(rows) != len(samples):
        raise ValueError(f"got completions for {len(samples)} rows, but {len(rows)} rows")
    if not rows:
        raise DataError("no rows to score")
    matcher = matcher or AliasMatcher()
    built = build_metrics(metrics) if built is None else built
    read = EXTRACTORS[extract]
    records = []
    for index, (row, completions) in enumerate(zip(rows, samples, strict=True)):
        expected, extra = expected_answer(row, index), row_aliases(row)
        extracted = [read(c) for c in completions]
        kinds = [matcher.match(e, expected, extra) for e in extracted]
        record: Row = {
            "index": index,
            "id": row.get("id"),
            "target": expected,
            "predictions": list(completions),
            "extracted": extracted,
            "match": kinds,
            "correct": kinds[0] is not None,
            "n_correct": sum(k is not None for k in kinds),
        }
        if secondary is not None:
            record["secondary_correct"] = [
                k is not None or secondary.matches(e, expected, extra)
                for k, e in zip(kinds, extracted, strict=True)
            ]
        records.append(record)

    def scores(indices: list[int]) -> dict[str, float]:
        return _scores([rows[i] for i in indices], [records[i] for i in indices], pass_at, built)

    everything = scores(list(range(len(rows))))
    out = dict(everything)
    for key in breakdown_keys:
        for value, indices in indices_by_value(rows, key).items():
            out |= {f"{name}/{key}={value}": v for name, v in scores(indices).items()}
    return ScoredRows(records=records, metrics=out | judge_usage(built))


def _scores(
    rows: list[Row], records: list[Row], pass_at: Sequence[int], built: Sequence[BuiltMetric]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for entry in built:
        spec, metric = entry.spec, entry.metric
        # pass_at_k takes every sample of a row; the others score the first completion.
        if spec.kind == "pass_at_k":
            predictions: list[Any] = [r["predictions"] for r in records]
        else:
            predictions = [r["predictions"][0] for r in records]
        out[metric_name(spec.kind, spec.params, out, prefix=None)] = metric.compute(
            predictions=predictions, targets=rows
        )
    for k in pass_at:
        out[f"pass@{k}"] = _mean_pass_at(k, [_correct_counts(r, "match") for r in records])
        if records and "secondary_correct" in records[0]:
            counts = [_correct_counts(r, "secondary_correct") for r in records]
            out[f"secondary_pass@{k}"] = _mean_pass_at(k, counts)
    return out


def _correct_counts(record: Row, field: str) -> tuple[int, int]:
    marks = record[field]
    return len(marks), sum(bool(m) for m in marks)


def _mean_pass_at(k: int, counts: list[tuple[int, int]]) -> float:
    return sum(pass_at_k_estimate(n, c, k) for n, c in counts) / len(counts)
