"""``summary.md`` and ``success_metric.png``: a sweep's summary for people.

Both are drawn from a :class:`~evsys.sweep.aggregate.SweepSummary` alone, so ``evsys results``
renders the same markdown from disk that :func:`~evsys.sweep.aggregate.write_sweep_outputs`
writes at multirun end.
"""

from __future__ import annotations

import io
import math
import statistics
from pathlib import Path
from typing import Any

from evsys.files import write_bytes_atomically
from evsys.report import format_number
from evsys.sweep.rows import (
    COMPLETED,
    PLOT_PNG,
    SEED,
    ArmRow,
    MetricStats,
    SweepSummary,
    metric_names,
    number,
    split_override,
    varying_overrides,
)

_METRIC_COLUMNS = 4  # the success metric, then the first others the arms report


def render_summary(summary: SweepSummary, plot_note: str | None = None) -> str:
    """``summary.md``: arms, groups, best arm, failures. ``plot_note`` is the line about the plot;
    None describes what is on disk (for ``evsys results``, which writes nothing)."""
    metric = (summary.success_metric or {}).get("name")
    others = [m for m in metric_names(summary.arms) if m != metric]
    columns = ([metric] if metric else []) + others[: _METRIC_COLUMNS - bool(metric)]
    swept = varying_overrides(summary.arms)
    first = summary.arms[0].overrides if summary.arms else []
    fixed = [o for o in first if split_override(o)[0] not in swept]
    completed = sum(a.status == COMPLETED for a in summary.arms)
    lines = [
        f"# Sweep {summary.name}",
        "",
        f"Directory: `{summary.sweep_dir}`  ",
        f"Arms: {len(summary.arms)} — {completed} completed, {len(summary.failed)} failed, "
        f"{len(summary.running)} running, {len(summary.missing)} not started  ",
        _success_line(summary.success_metric) + ("  " if fixed else ""),
    ]
    if fixed:
        lines.append("Same in every arm: " + " ".join(f"`{o}`" for o in fixed))
    lines += ["", "## Arms", ""]
    lines += _table(
        ["arm", *swept, "status", *columns],
        [
            [arm.name, *(col[i] or "" for col in swept.values()), arm.status]
            + [_fmt(arm.metrics.get(m)) for m in columns]
            for i, arm in enumerate(summary.arms)
        ],
    )
    lines += ["", "## Groups (mean ± std (n) across seeds)", ""]
    lines += _table(
        ["group", "arms", "completed", *columns],
        [
            [g.label, str(len(g.arms)), str(g.n)] + [_fmt_stats(g.metrics.get(m)) for m in columns]
            for g in summary.groups
        ],
    )
    lines += ["", _best_line(summary), ""]
    if summary.conclusion:
        lines += ["## Conclusion", "", *_markdown_lines(summary.conclusion), ""]
    if summary.failed:
        lines += ["## Failed arms", ""]
        for arm in summary.arms:
            if arm.name in summary.failed:
                lines.append(f"- `{arm.name}` ({arm.status}): {_first_line(arm.error)}")
        lines.append("")
    if summary.running:
        lines += ["Running (started, no result yet): " + ", ".join(summary.running), ""]
    if summary.missing:
        lines += ["Not started (no run_result.json yet): " + ", ".join(summary.missing), ""]
    lines += [plot_note if plot_note is not None else _plot_on_disk(summary), ""]
    return "\n".join(lines)


def _markdown_lines(text: str) -> list[str]:
    """Lines of ``text`` as separate markdown lines (a trailing double space breaks the line)."""
    lines = text.splitlines()
    return [line + "  " for line in lines[:-1]] + lines[-1:]


def _success_line(success: dict[str, str] | None) -> str:
    if success is None:
        return "Success metric: none (set `metadata.success_metric` to rank the arms)"
    return f"Success metric: `{success['name']}` ({success['direction']})"


def _best_line(summary: SweepSummary) -> str:
    success = summary.success_metric
    if success is None:
        return "Best arm: none (no success metric)"
    if summary.best_arm is None:
        return f"Best arm: none (no completed arm reports {success['name']})"
    value = _fmt(summary.best_value)
    return f"Best arm: {summary.best_arm} ({success['name']} = {value}, {success['direction']})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cells(values: list[str]) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    return [cells(header), cells(["---"] * len(header)), *map(cells, rows)]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return format_number(value)


def _fmt_stats(stats: MetricStats | None) -> str:
    if stats is None:
        return ""
    spread = f" ± {format_number(stats.std)}" if stats.std is not None else ""
    return f"{format_number(stats.mean)}{spread} ({stats.n})"


def _first_line(text: str | None, limit: int = 200) -> str:
    line = (text or "").strip().split("\n", 1)[0] or "no error recorded"
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- the plot -----------------------------------------------------------------------------------


def _no_plot_reason(summary: SweepSummary) -> str | None:
    if summary.success_metric is None:
        return "no success metric (set `metadata.success_metric`)"
    if not varying_overrides(summary.arms, exclude=(SEED,)):
        return "no swept axis besides the seed"
    if summary.best_arm is None:
        return f"no completed arm reports {summary.success_metric['name']}"
    return None


def _plot_on_disk(summary: SweepSummary) -> str:
    reason = _no_plot_reason(summary)
    if reason:
        return f"No plot: {reason}."
    if (summary.sweep_dir / PLOT_PNG).is_file():
        return f"![{summary.success_metric['name']} per swept axis]({PLOT_PNG})"
    return "No plot yet: it is written when the multirun ends."


def plot_success_metric(summary: SweepSummary, path: Path) -> str:
    """Plot the success metric against each swept axis into ``path``; return summary.md's line.

    One subplot per axis (override keys that vary across arms, the seed excluded): per axis value
    the mean ± std over the completed arms with that value. Numeric axes are numeric (log scale
    when the values span 100× or more); others are categories, in the order the arms give them.
    """
    reason = _no_plot_reason(summary)
    if reason is None:
        try:  # lazy: matplotlib is an optional extra, and slow to import
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            reason = "matplotlib is not installed (pip install 'evsys[plot]')"
    if reason is not None:
        path.unlink(missing_ok=True)  # never leave a plot that summary.md does not describe
        return f"No plot: {reason}."

    metric, direction = summary.success_metric["name"], summary.success_metric["direction"]
    axes = varying_overrides(summary.arms, exclude=(SEED,))
    fig = Figure(figsize=(4.5 * len(axes), 3.8), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, without touching pyplot's global backend
    subplots = fig.subplots(1, len(axes), squeeze=False)[0]
    for ax, (key, column) in zip(subplots, axes.items(), strict=True):
        labels, means, stds = _axis_points(summary.arms, column, metric)
        xs = [_float(label) for label in labels]
        if all(x is not None for x in xs):
            ax.errorbar(xs, means, stds, fmt="o-", capsize=4)
            if min(xs) > 0 and max(xs) / min(xs) >= 100:
                ax.set_xscale("log")
        else:
            ax.errorbar(range(len(labels)), means, stds, fmt="o", capsize=4)
            ax.set_xticks(range(len(labels)), labels)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set(xlabel=key, ylabel=metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{summary.name}: {metric} ({direction} is better), mean ± std over arms")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_bytes_atomically(path, buffer.getvalue())
    return f"![{metric} per swept axis]({PLOT_PNG})"


def _axis_points(
    arms: list[ArmRow], column: list[str | None], metric: str
) -> tuple[list[str], list[float], list[float]]:
    """Per value of one axis: the mean and std of ``metric`` over the completed arms with it.

    Values come sorted by number when they all are numbers, else in the order the arms give them.
    """
    points: dict[str, list[float]] = {}
    for arm, value in zip(arms, column, strict=True):
        y = number(arm.metrics.get(metric)) if arm.status == COMPLETED else None
        if y is not None:
            points.setdefault("(unset)" if value is None else value, []).append(y)
    labels = list(points)
    if all(_float(label) is not None for label in labels):
        labels.sort(key=_float)
    means = [statistics.fmean(points[label]) for label in labels]
    stds = [statistics.stdev(points[label]) if len(points[label]) > 1 else 0.0 for label in labels]
    return labels, means, stds


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
