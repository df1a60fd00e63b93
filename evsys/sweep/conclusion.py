"""The conclusion of an experiment, written from its results.

Which configuration won on the success metric, by how much over the runner-up, how much the
metric moved between seeds of one configuration, whether the win is larger than that movement,
and which arms failed. Configurations are compared as run groups (the arms that differ only by
seed, mean over their completed seeds); the single best arm is named too.

"Larger than the spread" is a plain, stated rule, not a significance test: the winner's and the
runner-up's mean ± std ranges do not overlap, i.e. margin > std(winner) + std(runner-up). With one
seed per group the spread is unknown and the text says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

from evsys.registry import closest
from evsys.report import format_number
from evsys.sweep.metric_names import ambiguity as metric_ambiguity
from evsys.sweep.rows import (
    COMPLETED,
    MISSING,
    RUNNING,
    SEED,
    ArmRow,
    GroupRow,
    MetricStats,
    number,
    split_override,
    varying_overrides,
)

_RANKED_GROUPS = 6  # groups listed by name in the conclusion; the summary table has them all


@dataclass
class Ranked:
    """A run group with a value of the success metric."""

    label: str
    stats: MetricStats


def conclude(
    *,
    hypothesis: str,
    success_metric: dict[str, str] | None,
    arms: list[ArmRow],
    groups: list[GroupRow],
    best_arm: str | None,
    best_value: float | None,
) -> str:
    """A few plain sentences, markdown-friendly (names in backticks), one topic per line."""
    lines = [f"Hypothesis: {hypothesis}"] if hypothesis else []
    lines.append(_outcome(success_metric, arms, groups))
    if success_metric is not None and best_arm is not None:
        metric = success_metric["name"]
        lines.append(f"Best single arm: `{best_arm}` ({metric} = {_fmt(best_value)}).")
    lines += _failures(arms)
    return "\n".join(lines)


def _outcome(success: dict[str, str] | None, arms: list[ArmRow], groups: list[GroupRow]) -> str:
    if not arms:
        return "No arm was run."
    if success is None:
        completed = sum(a.status == COMPLETED for a in arms)
        return (
            f"No success metric is set (metadata.success_metric), so no arm is ranked; "
            f"{completed} of {len(arms)} arms completed."
        )
    metric, direction = success["name"], success["direction"]
    ranked = _rank(groups, arms, metric, maximise=direction == "max")
    if not ranked:
        why = unreported_metric(metric, arms) or f"no completed arm reports `{metric}`"
        return f"{why[0].upper()}{why[1:]}, so no arm is ranked."
    winner = ranked[0]
    better = "higher" if direction == "max" else "lower"
    head = f"`{winner.label}` is best on `{metric}` ({better} is better): {_stats(winner.stats)}"
    if len(ranked) == 1:
        return head + "; it is the only configuration with a result, so nothing is compared."
    runner_up = ranked[1]
    margin = abs(winner.stats.mean - runner_up.stats.mean)
    if margin == 0:
        text = (
            f"No configuration wins on `{metric}`: `{winner.label}` and `{runner_up.label}` tie "
            f"at {_stats(winner.stats)} and {_stats(runner_up.stats)}."
        )
        return text + _listing(ranked)
    text = (
        f"{head}, against {_stats(runner_up.stats)} for the runner-up `{runner_up.label}`: "
        f"{_ahead(margin, runner_up.stats.mean)}. {_against_spread(winner, runner_up, margin)}"
    )
    return text + _listing(ranked)


def unreported_metric(metric: str, arms: list[ArmRow]) -> str | None:
    """ "no arm reported `X`; reported: …" (with the closest name) when arms completed and none
    reported ``metric``: only the arms can tell which metrics a run reports (a custom recipe or
    callback adds its own), so this is where a misspelt success metric shows. None otherwise."""
    completed = [arm for arm in arms if arm.status == COMPLETED]
    if not completed or any(metric in arm.metrics for arm in completed):
        return None
    ambiguous = metric_ambiguity(metric, completed)
    if ambiguous:
        return ambiguous
    reported = sorted({name for arm in completed for name in arm.metrics})
    text = f"no arm reported `{metric}`; reported: " + (
        ", ".join(f"`{name}`" for name in reported) or "nothing"
    )
    suggestion = closest(metric, reported)
    return text + (f" (did you mean `{suggestion}`?)" if suggestion else "")


def _rank(
    groups: list[GroupRow], arms: list[ArmRow], metric: str, *, maximise: bool
) -> list[Ranked]:
    """Groups with a value of ``metric``, best first; ties keep the groups' order."""
    labels = group_labels(groups, arms)
    ranked = [Ranked(labels[g.group_id], g.metrics[metric]) for g in groups if metric in g.metrics]
    return sorted(ranked, key=lambda r: -r.stats.mean if maximise else r.stats.mean)


def group_labels(groups: list[GroupRow], arms: list[ArmRow]) -> dict[str, str]:
    """A short name per group: the overrides that differ between groups (the seed aside).

    ``algorithm.params.lora_rank=32`` rather than every fixed override of the command line; the
    group's own label (its overrides) when nothing but the seed varies.
    """
    by_name = {arm.name: arm for arm in arms}
    varying = varying_overrides(arms, exclude=(SEED,))
    labels = {}
    for group in groups:
        first = by_name.get(group.arms[0]) if group.arms else None
        values = dict(map(split_override, first.overrides)) if first else {}
        parts = [f"{key}={values[key]}" for key in varying if values.get(key) is not None]
        labels[group.group_id] = " ".join(parts) or group.label
    return labels


def _listing(ranked: list[Ranked]) -> str:
    """Every configuration, best first, when there are more than the two compared."""
    if len(ranked) <= 2:
        return ""
    shown = ranked[:_RANKED_GROUPS]
    rest = len(ranked) - len(shown)
    listing = "; ".join(f"`{r.label}` {_stats(r.stats)}" for r in shown)
    more = f"; and {rest} more (see the groups table)." if rest else "."
    return f"\nAll configurations, best first: {listing}{more}"


def _ahead(margin: float, runner_up: float) -> str:
    relative = f" ({margin / abs(runner_up):.1%} of the runner-up's value)" if runner_up else ""
    return f"ahead by {_fmt(margin)}{relative}"


def _against_spread(winner: Ranked, runner_up: Ranked, margin: float) -> str:
    spreads = (winner.stats.std, runner_up.stats.std)
    if any(s is None for s in spreads):
        single = [r.label for r, s in zip((winner, runner_up), spreads, strict=True) if s is None]
        return (
            "The spread across seeds is unknown (one completed seed for "
            + " and ".join(f"`{label}`" for label in single)
            + "), so the difference cannot be weighed against it; repeat the arms over seeds "
            "(hydra.sweeper.n_repeats) to measure it."
        )
    a, b = spreads
    if margin > a + b:
        return (
            f"The difference exceeds the spread across seeds: the mean ± std ranges do not "
            f"overlap ({_fmt(margin)} > {_fmt(a)} + {_fmt(b)})."
        )
    return (
        f"The difference does not exceed the spread across seeds: the mean ± std ranges "
        f"overlap ({_fmt(margin)} ≤ {_fmt(a)} + {_fmt(b)}), so this ranking may not hold."
    )


def _failures(arms: list[ArmRow]) -> list[str]:
    failed = [a for a in arms if a.status not in (COMPLETED, MISSING, RUNNING)]
    running = [a for a in arms if a.status == RUNNING]
    missing = [a for a in arms if a.status == MISSING]
    lines = []
    if failed:
        listed = "; ".join(f"`{a.name}` ({a.status}: {_first_line(a.error)})" for a in failed)
        lines.append(f"Failed arms ({len(failed)} of {len(arms)}): {listed}.")
    if running:
        names = ", ".join(f"`{a.name}`" for a in running)
        lines.append(f"Arms still running ({len(running)}): {names}.")
    if missing:
        names = ", ".join(f"`{a.name}`" for a in missing)
        lines.append(f"Arms not started yet ({len(missing)}): {names}.")
    return lines


def _stats(stats: MetricStats) -> str:
    if stats.std is None:
        return f"{_fmt(stats.mean)} (1 seed)" if stats.n == 1 else _fmt(stats.mean)
    return f"{_fmt(stats.mean)} ± {_fmt(stats.std)} over {stats.n} seeds"


def _fmt(value: float | None) -> str:
    value = number(value)
    return "n/a" if value is None else format_number(value)


def _first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().split("\n", 1)[0] or "no error recorded"
    return line if len(line) <= limit else line[: limit - 1] + "…"
