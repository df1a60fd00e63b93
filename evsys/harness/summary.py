"""An eval's summary: ``EvalSummary`` (what summary.json holds) and ``format_summary_markdown``,
the same for people (summary.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evsys.harness.retry import RetryReport
from evsys.report import format_number

MAX_FAILURES_LISTED = 20
JUDGE_PREFIX = "judge/"
"""A judge model's usage (``judge/cost_usd``, …), apart from the scored model's."""


@dataclass
class EvalSummary:
    model: str
    inference_kind: str
    dataset: str | None
    n_rows: int
    num_samples: int
    metrics: dict[str, float]
    retry_report: RetryReport
    seconds: float
    answered: int = 0
    """Completions in hand (reused ones included); 0: every call failed, nothing was scored."""
    reused: int = 0
    """Completions read back from an earlier eval into the same directory, not asked again."""
    unreadable_verdicts: list[dict[str, Any]] = field(default_factory=list)
    """``{index, id, metric, error}`` of each row whose verdict could not be read (scored 0)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "inference_kind": self.inference_kind,
            "dataset": self.dataset,
            "n_rows": self.n_rows,
            "num_samples": self.num_samples,
            "answered": self.answered,
            "reused": self.reused,
            "metrics": self.metrics,
            "retry_report": self.retry_report.to_dict(),
            "unreadable_verdicts": self.unreadable_verdicts,
            "seconds": round(self.seconds, 3),
        }


def format_summary_markdown(summary: EvalSummary, title: str | None = None) -> str:
    """Headline metrics (with the scored model's usage), then a judge model's usage, per-key
    breakdowns, the retry report (every failed call) and every sample the model refused."""
    s = summary
    lines = [
        f"# {title or f'Eval of {s.model}'}",
        "",
        f"- model: `{s.model}` (inference: `{s.inference_kind}`)",
        f"- dataset: `{s.dataset or '(rows given directly)'}`",
        f"- rows: {s.n_rows} × {s.num_samples} sample{'s' * (s.num_samples != 1)}, "
        f"{s.seconds:.1f} s",
        *([f"- answers reused from an earlier eval: {s.reused}"] if s.reused else []),
        "",
        "| metric | value |",
        "| --- | ---: |",
    ]
    headline = {k: v for k, v in s.metrics.items() if "/" not in k}
    judge = {k: v for k, v in s.metrics.items() if k.startswith(JUDGE_PREFIX)}
    breakdowns = {k: v for k, v in s.metrics.items() if "/" in k and k not in judge}
    lines += [f"| {k} | {format_number(v)} |" for k, v in headline.items()]
    if judge:
        lines += ["", "## Judge usage", "", "| metric | value |", "| --- | ---: |"]
        lines += [f"| {k} | {format_number(v)} |" for k, v in judge.items()]
    if breakdowns:
        lines += ["", "## Breakdown", "", "| metric | value |", "| --- | ---: |"]
        lines += [f"| {k} | {format_number(v)} |" for k, v in sorted(breakdowns.items())]
    if s.unreadable_verdicts:
        lines += [
            "",
            "## Verdicts that could not be read (scored 0)",
            "",
            "| row | id | metric | why |",
            "| ---: | --- | --- | --- |",
        ]
        for v in s.unreadable_verdicts[:MAX_FAILURES_LISTED]:
            lines.append(
                f"| {v['index']} | {_cell(v['id'])} | {v['metric']} | {_cell(v['error'])} |"
            )
        if len(s.unreadable_verdicts) > MAX_FAILURES_LISTED:
            more = len(s.unreadable_verdicts) - MAX_FAILURES_LISTED
            lines.append(f"\n… and {more} more in summary.json.")
    report = s.retry_report
    lines += ["", "## Retries", ""]
    if not report.total_failures:
        lines.append(f"Every call succeeded ({report.retries} retried attempts).")
    else:
        lines += [
            f"**{report.total_failures} calls failed after all attempts** "
            f"(rows {', '.join(map(str, report.failed_rows))}; scored as wrong); "
            f"{report.retries} retried attempts in all.",
            "",
            "| row | id | sample | attempts | error |",
            "| ---: | --- | ---: | ---: | --- |",
        ]
        shown = sorted(report.failures, key=lambda f: (f.index, f.sample))[:MAX_FAILURES_LISTED]
        for f in shown:
            lines.append(
                f"| {f.index} | {_cell(f.row_id)} | {f.sample} | {f.attempts} | {_cell(f.error)} |"
            )
        if report.total_failures > len(shown):
            lines.append(f"\n… and {report.total_failures - len(shown)} more in summary.json.")
    if not report.total_refused:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "## Refusals",
        "",
        f"**{report.total_refused} sample{'s' * (report.total_refused != 1)} refused** "
        "(a refusal, a content filter or a safety "
        f"block; rows {', '.join(map(str, report.refused_rows))}; not retried, scored as wrong).",
        "",
        "| row | id | sample | why |",
        "| ---: | --- | ---: | --- |",
    ]
    refused = sorted(report.refusals, key=lambda r: (r.index, r.sample))[:MAX_FAILURES_LISTED]
    for r in refused:
        lines.append(f"| {r.index} | {_cell(r.row_id)} | {r.sample} | {_cell(r.reason)} |")
    if report.total_refused > len(refused):
        lines.append(f"\n… and {report.total_refused - len(refused)} more in summary.json.")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    """Text from outside (a row id, an error, a reply) as one table cell of one line."""
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
