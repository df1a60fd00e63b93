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
from evsys.task_verifiers import own_payload

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


def expected_answer(row: Row, index: int) -> str | None:
    """The answer a row expects: ``answer``, else the answer in its final assistant turn. None
    for a harbor task without one: its own verifier (a judge, tests) scores it."""
    if row.get("answer") is not None:
        return str(row["answer"])
    try:
        return extract_answer(assistant_text(row))
    except DataError:
        if own_payload(row) is not None:
            return None
        raise DataError(
            f"row {index} (id {row.get('id')!r}) has no expected answer: give it 'answer' or a "
            "final assistant turn"
        ) from None


def check_references(rows: Sequence[Row], built: Sequence[BuiltMetric]) -> None:
    """Before any call is paid for: every row has an expected answer, unless it is a harbor
    task and every metric scores tasks by their own verifiers (pass_rate); DataError naming
    the first row and metric that cannot be scored."""
    wanting = [e.spec.kind for e in built if getattr(e.metric, "needs_reference", True)]
    for index, row in enumerate(rows):
        if expected_answer(row, index) is None and wanting:
            raise DataError(
                f"row {index} (id {row.get('id')!r}) has no expected answer, which metric "
                f"'{wanting[0]}' needs: give the row an 'answer', or score it by its own "
                "verifier alone (--metric '{kind: pass_rate, params: {judge: …}}')"
            )


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
        kinds = (
            [matcher.match(e, expected, extra) for e in extracted] if expected is not None else []
        )
        record: Row = {
            "index": index,
            "id": row.get("id"),
            "target": expected,
            "predictions": list(completions),
            "extracted": extracted,
            "match": kinds or [None] * len(extracted),
            # None: nothing to match against; the row's own verifier scored it (verdicts).
            "correct": kinds[0] is not None if kinds else None,
            "n_correct": sum(k is not None for k in kinds) if kinds else None,
        }
        if secondary is not None and expected is not None:
            record["secondary_correct"] = [
                k is not None or secondary.matches(e, expected, extra)
                for k, e in zip(kinds, extracted, strict=True)
            ]
        records.append(record)

    names = metric_names(built)

    def scores(indices: list[int]) -> dict[str, float]:
        chosen = [rows[i] for i in indices], [records[i] for i in indices]
        return _scores(*chosen, pass_at, built, names)

    everything = scores(list(range(len(rows))))
    out = dict(everything)
    for key in breakdown_keys:
        for value, indices in indices_by_value(rows, key).items():
            out |= {f"{name}/{key}={value}": v for name, v in scores(indices).items()}
    for row, record in zip(rows, records, strict=True):
        verdicts = row_verdicts(row, record["predictions"][0], built, names)
        if verdicts:
            record["verdicts"] = verdicts
    return ScoredRows(records=records, metrics=out | judge_usage(built))


def metric_names(built: Sequence[BuiltMetric]) -> list[str]:
    """The name each metric is reported under (the same kind twice: with its params)."""
    names: list[str] = []
    for entry in built:
        names.append(metric_name(entry.spec.kind, entry.spec.params, names, prefix=None))
    return names


def row_verdicts(
    row: Row, prediction: Any, built: Sequence[BuiltMetric], names: Sequence[str]
) -> dict[str, Any]:
    """``{metric name: {reward, …what its verifier said}}`` of the metrics that keep a verdict
    per row (pass_rate: a judge's reply, an unreadable verdict's error), for this row alone."""
    out: dict[str, Any] = {}
    for entry, name in zip(built, names, strict=True):
        verdict = getattr(entry.metric, "verdict", None)
        result = verdict(prediction, row) if verdict is not None else None
        if result is not None:
            out[name] = {"reward": result.reward, **result.info}
    return out


def _scores(
    rows: list[Row],
    records: list[Row],
    pass_at: Sequence[int],
    built: Sequence[BuiltMetric],
    names: Sequence[str],
) -> dict[str, float]:
    out: dict[str, float] = {}
    for entry, name in zip(built, names, strict=True):
        # pass_at_k takes every sample of a row; the others score the first completion.
        if entry.spec.kind == "pass_at_k":
            predictions: list[Any] = [r["predictions"] for r in records]
        else:
            predictions = [r["predictions"][0] for r in records]
        out[name] = entry.metric.compute(predictions=predictions, targets=rows)
    if any(r["target"] is None for r in records):
        return out  # pass@k needs an expected answer on every row it averages over
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
