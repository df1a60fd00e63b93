"""Chart geometry for the inline SVG charts: pixels and tick labels, computed here, drawn by the
``charts.html`` macros (so every label goes through the templates' autoescape).

Two shapes: a metric's curve over steps (``line_chart``) and the success metric of each arm
against one swept axis (``axis_chart``; numeric, log-spaced or categorical values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from evsys.report import format_number

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 68, 16, 12, 40
MAX_POINTS = 600
"""A curve keeps at most this many points (evenly strided, last point kept): a 100k-step run
draws as fast as a short one and the page stays small."""


@dataclass
class Tick:
    at: float
    label: str


@dataclass
class Point:
    x: float
    y: float
    title: str
    """The tooltip: which arm or step, and its value."""
    href: str | None = None
    best: bool = False


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    width: int = WIDTH
    height: int = HEIGHT
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    polyline: str = ""
    """``x,y x,y …`` of the curve; empty for a scatter of arms."""
    points: list[Point] = field(default_factory=list)
    nonfinite: str = ""
    """Where a curve was NaN or infinite, which it cannot draw: ``NaN at step 12, …``."""

    @property
    def plot_left(self) -> int:
        return LEFT

    @property
    def plot_right(self) -> int:
        return self.width - RIGHT

    @property
    def plot_top(self) -> int:
        return TOP

    @property
    def plot_bottom(self) -> int:
        return self.height - BOTTOM


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2 or 5 times a power of ten."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high == low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [round(i * step, 12) + 0.0 for i in range(first, last + 1)]  # + 0.0: no -0.0


class _Scale:
    """Data → pixels on one axis, linear or log10; a flat range is widened so it has a middle."""

    def __init__(
        self,
        low: float,
        high: float,
        start: float,
        end: float,
        log: bool = False,
        padded: bool = False,
    ):
        self.log = log
        if log:
            low, high = math.log10(low), math.log10(high)
        if high == low:
            pad = abs(low) * 0.1 or 1.0
            low, high = low - pad, high + pad
        elif padded:  # dots at the extremes stay inside the plot
            pad = (high - low) * 0.06
            low, high = low - pad, high + pad
        self.low, self.high, self.start, self.end = low, high, start, end

    def __call__(self, value: float) -> float:
        if self.log:
            value = math.log10(value)
        return round(
            self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start), 1
        )

    def ticks(self) -> list[Tick]:
        if self.log:
            decades = range(math.floor(self.low), math.ceil(self.high) + 1)
            values = [10.0**d for d in decades if self.low - 1e-9 <= d <= self.high + 1e-9]
        else:
            values = nice_ticks(self.low, self.high)
        return [Tick(self(v), format_number(v, ".3g")) for v in values]


def line_chart(title: str, points: list[tuple[float, float]]) -> Chart:
    """One metric over steps; ``points`` are (step, value) in step order, non-finite values
    named in ``nonfinite`` instead of drawn."""
    chart = Chart(title=title, x_label="step", y_label=title)
    chart.nonfinite = _nonfinite_note([(x, y) for x, y in points if not math.isfinite(y)])
    points = [(x, y) for x, y in points if math.isfinite(y)]
    if len(points) > MAX_POINTS:
        stride = math.ceil(len(points) / MAX_POINTS)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    if not points:
        return chart
    xs, ys = [x for x, _ in points], [y for _, y in points]
    sx = _Scale(min(xs), max(xs), chart.plot_left, chart.plot_right)
    sy = _Scale(min(ys), max(ys), chart.plot_bottom, chart.plot_top, padded=True)
    chart.x_ticks, chart.y_ticks = sx.ticks(), sy.ticks()
    chart.polyline = " ".join(f"{sx(x)},{sy(y)}" for x, y in points)
    if len(points) == 1:  # a lone point has no line to show it
        x, y = points[0]
        chart.points = [Point(sx(x), sy(y), f"step {format_number(x)}: {format_number(y)}")]
    return chart


def _nonfinite_note(points: list[tuple[float, float]], shown: int = 5) -> str:
    """``NaN at step 3, 4; -Infinity at step 9`` (the first ``shown`` steps of each, a count)."""
    steps: dict[str, list[str]] = {}
    for x, y in points:
        name = "NaN" if math.isnan(y) else "Infinity" if y > 0 else "-Infinity"
        steps.setdefault(name, []).append(format_number(x))
    parts = []
    for name, at in steps.items():
        more = f" and {len(at) - shown} more" if len(at) > shown else ""
        parts.append(f"{name} at step {', '.join(at[:shown])}{more}")
    return "; ".join(parts)


@dataclass
class ArmValue:
    """One arm on an axis chart: its value on the axis, its score, and where its page is."""

    name: str
    axis_value: Any
    score: float
    href: str | None = None
    best: bool = False


def axis_chart(axis: str, metric: str, arms: list[ArmValue]) -> Chart:
    """The success metric of each arm against one swept axis. Numbers get a numeric axis (log10
    when positive and spanning two decades or more, as learning rates do); anything else is a
    category, in order of first appearance."""
    arms = [a for a in arms if isinstance(a.score, int | float) and math.isfinite(a.score)]
    chart = Chart(title=f"{metric} by {axis}", x_label=axis, y_label=metric)
    if not arms:
        return chart
    ys = [float(a.score) for a in arms]
    sy = _Scale(min(ys), max(ys), chart.plot_bottom, chart.plot_top, padded=True)
    chart.y_ticks = sy.ticks()
    numeric = all(_is_number(a.axis_value) for a in arms)
    if numeric:
        xs = [float(a.axis_value) for a in arms]
        log = min(xs) > 0 and max(xs) / min(xs) >= 100
        sx = _Scale(min(xs), max(xs), chart.plot_left + 12, chart.plot_right - 12, log=log)
        chart.x_ticks = sx.ticks()
        place = {id(a): sx(float(a.axis_value)) for a in arms}
    else:
        categories = list(dict.fromkeys(_label(a.axis_value) for a in arms))
        span = (chart.plot_right - chart.plot_left) / len(categories)
        slot = {c: round(chart.plot_left + span * (i + 0.5), 1) for i, c in enumerate(categories)}
        chart.x_ticks = [Tick(slot[c], c) for c in categories]
        place = {id(a): slot[_label(a.axis_value)] for a in arms}
    for arm in arms:
        title = f"{arm.name}: {axis}={_label(arm.axis_value)}, {metric}={format_number(arm.score)}"
        chart.points.append(Point(place[id(arm)], sy(arm.score), title, arm.href, arm.best))
    return chart


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _label(value: Any) -> str:
    if _is_number(value):
        return format_number(value, ".3g")
    text = str(value)
    return text if len(text) <= 24 else text[:23] + "…"
