"""``evaluate_model``: generate for every row (with retries), score, write predictions and summary.

Output directory::

    generations.jsonl   every completion, appended and flushed as it arrives, before scoring
                        (evsys.harness.journal): what an eval that fails later leaves behind,
                        and what the next eval into the same directory reuses
    predictions.jsonl   one line per row: prompt, expected answer, completions, extracted answers,
                        how each matched, each metric's verdict on it (a judge's), the error
                        of every call that failed and why the model refused each sample it
                        declined (``refused``)
    summary.json        metrics, counts, the retry report
    summary.md          the same for people (format_summary_markdown)
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evsys.clients.usage import mark, usage_since
from evsys.errors import BackendError, ConfigError, DataError
from evsys.files import (
    StorageError,
    write_json_atomically,
    write_jsonl_atomically,
    write_text_atomically,
)
from evsys.harness.aliases import AliasMatcher
from evsys.harness.config import ModelEvalConfig
from evsys.harness.generation import ModelDown, Samples, generate_samples
from evsys.harness.journal import AnswerJournal
from evsys.harness.prompts import load_eval_dataset, render_prompt
from evsys.harness.retry import RefusedAnswer, RetryReport
from evsys.harness.scoring import build_metrics, check_references, score_rows
from evsys.harness.summary import EvalSummary, format_summary_markdown
from evsys.protocols import InferenceClient
from evsys.registry import INFERENCE_CLIENTS

Row = dict[str, Any]
PREDICTIONS, SUMMARY_JSON, SUMMARY_MD = "predictions.jsonl", "summary.json", "summary.md"


@dataclass
class EvalArtifacts:
    summary: EvalSummary
    records: list[Row]
    paths: dict[str, Path] = field(default_factory=dict)
    """``predictions``, ``summary_json``, ``summary_md`` when an output_dir was given."""


class EvalStopped(BackendError):
    """The eval stopped before its end (a judge or the model is down); the answers it got are
    saved (with an output_dir), and the next eval into the same directory reuses them."""

    def __init__(self, why: str, answered: int, saved: Path | None):
        self.answered, self.saved = answered, saved
        if not answered:
            kept = "the model gave no answer to keep"
        elif saved is not None:
            kept = (
                f"the {answered} answers are saved in {saved}; run the same command again (or "
                "with --resume) to score them without asking the model for them again"
            )
        else:
            kept = f"the {answered} answers are lost (no output_dir to save them in)"
        super().__init__(f"{why}; {kept}")


def evaluate_model(
    config: ModelEvalConfig,
    *,
    client: InferenceClient | None = None,
    rows: Sequence[Row] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> EvalArtifacts:
    """Score ``client`` (else the client ``config`` describes) on ``rows`` (else config.dataset).

    Every call goes through :func:`call_with_retry`; calls that exhaust their retries count as
    wrong answers and are listed in ``summary.retry_report``; they never abort the eval. A sample
    the model refused (a refusal, a content filter, a safety block) is not retried: it scores as
    wrong too (no answer was given), is counted apart (``retry_report.total_refused``) and says
    why in its prediction's ``refused``. Bad input (a missing dataset or alias file, a broken line, an unknown client or metric, a row
    without an expected answer that a metric needs, an output_dir holding another model's
    answers) raises ConfigError/DataError before any call is made. With an output_dir, each
    completion is saved as it arrives (generations.jsonl) and ones saved there before are
    reused; scoring that fails (a judge that is down), a model that is down (``give_up_after``
    failed calls in a row) and a disk that fills up (a ``StorageError`` naming the file) raise
    :class:`EvalStopped`, the answers kept. A
    hosted model's usage is reported as ``cost_usd``, ``latency_p50_s``, …, a judge model's (a
    metric that asks one) as ``judge/cost_usd``, …
    """
    started = time.monotonic()
    metadata: dict[str, Any] = {}
    if rows is None:
        if config.dataset is None:
            raise ConfigError("evaluate_model needs rows, or config.dataset to read them from")
        rows, metadata = load_eval_dataset(config.dataset)
    rows = list(rows)[: config.limit]
    if not rows:
        raise DataError("no rows to evaluate")
    matcher = AliasMatcher.from_file(config.aliases) if config.aliases else None
    secondary = (
        AliasMatcher.from_file(config.secondary_aliases) if config.secondary_aliases else None
    )
    metrics = build_metrics(config.metrics)
    check_references(rows, metrics)
    breakdown = config.breakdown_keys
    if breakdown is None:
        breakdown = list(metadata.get("breakdown_keys", []))
    report = RetryReport()
    if client is None:
        client = build_client(config, sleep=sleep, on_retry=report.record_retry)

    prompts = [
        render_prompt(row, system=config.system_prompt, template=config.prompt_template)
        for row in rows
    ]
    samples, reused, saved, usage = _generate(config, client, prompts, rows, report, sleep)
    answered = sum(c is not None for row in samples for c in row)
    try:
        scored = score_rows(
            rows,
            samples,
            matcher=matcher,
            secondary=secondary,
            extract=config.extract,
            pass_at=config.pass_at,
            breakdown_keys=breakdown,
            built=metrics,
        )
    except (BackendError, ConfigError, DataError) as exc:
        why = f"scoring failed: {type(exc).__name__}: {exc}"
        raise EvalStopped(why, answered, saved) from exc
    errors: dict[int, dict[int, str]] = {}
    for failure in report.failures:
        errors.setdefault(failure.index, {})[failure.sample] = failure.error
    refused: dict[int, dict[int, str]] = {}
    for refusal in report.refusals:
        refused.setdefault(refusal.index, {})[refusal.sample] = refusal.reason
    records = [
        {
            **record,
            "prompt": prompt,
            **({"errors": errors[i]} if i in errors else {}),
            **({"refused": refused[i]} if i in refused else {}),
        }
        for i, (record, prompt) in enumerate(zip(scored.records, prompts, strict=True))
    ]
    summary = EvalSummary(
        model=config.model_label,
        inference_kind=config.inference_kind,
        dataset=config.dataset,
        n_rows=len(rows),
        num_samples=config.num_samples,
        metrics=scored.metrics | usage,
        retry_report=report,
        seconds=time.monotonic() - started,
        answered=answered,
        reused=reused,
        unreadable_verdicts=[
            {"index": r["index"], "id": r["id"], "metric": name, "error": v["verdict_error"]}
            for r in records
            for name, v in r.get("verdicts", {}).items()
            if "verdict_error" in v
        ],
    )
    artifacts = EvalArtifacts(summary=summary, records=records)
    if config.output_dir is not None:
        try:
            artifacts.paths = write_outputs(Path(config.output_dir), summary, records)
        except StorageError as exc:  # a full disk: the answers (generations.jsonl) are kept
            raise EvalStopped(str(exc), answered, saved) from exc
    return artifacts


def _generate(
    config: ModelEvalConfig,
    client: InferenceClient,
    prompts: list[Any],
    rows: list[Row],
    report: RetryReport,
    sleep: Callable[[float], None],
) -> tuple[Samples, int, Path | None, dict[str, float]]:
    """The completions (None: failed), how many were reused from the output directory, where
    they are saved (None: no output_dir) and the scored model's usage (``cost_usd``, …)."""
    journal = None
    if config.output_dir is not None:  # another model's answers there: a ConfigError, now
        journal = AnswerJournal.for_eval(Path(config.output_dir), config, prompts)
    done = journal.read(config.num_samples) if journal is not None else None
    reused = sum(
        isinstance(c, str) and not isinstance(c, RefusedAnswer) for row in done or [] for c in row
    )
    for index, row in enumerate(done or []):
        for sample, completion in enumerate(row):
            if isinstance(completion, RefusedAnswer):  # paid for before: counted, not asked
                report.record_refusal(index, rows[index].get("id"), sample, completion.reason)

    def save(index: int, sample: int, completion: str) -> None:
        if journal is not None:
            journal.append(index, rows[index].get("id"), sample, completion)

    def save_refusal(index: int, sample: int, why: str) -> None:
        if journal is not None:
            journal.append(index, rows[index].get("id"), sample, "", refused=why)

    since = mark(client)
    try:
        samples = generate_samples(
            client,
            prompts,
            rows,
            config,
            report,
            sleep=sleep,
            done=done,
            on_answer=save,
            on_refusal=save_refusal,
            give_up_after=config.give_up_after,
        )
    except (ModelDown, StorageError) as exc:  # a full disk keeps the lines written before it
        written = journal.written if journal is not None else 0
        raise EvalStopped(str(exc), reused + written, journal.path if journal else None) from exc
    finally:
        if journal is not None:
            journal.close()
    usage = usage_since(client, since)  # a hosted model's cost_usd, latency_p50_s, …
    return samples, reused, journal.path if journal is not None else None, usage


def write_outputs(out: Path, summary: EvalSummary, records: list[Row]) -> dict[str, Path]:
    """predictions.jsonl, summary.json and summary.md in ``out``, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "predictions": out / PREDICTIONS,
        "summary_json": out / SUMMARY_JSON,
        "summary_md": out / SUMMARY_MD,
    }
    write_jsonl_atomically(paths["predictions"], records)
    write_json_atomically(paths["summary_json"], summary.to_dict())
    write_text_atomically(paths["summary_md"], format_summary_markdown(summary))
    return paths


def build_client(
    config: ModelEvalConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> InferenceClient:
    """The registered client ``config.inference_kind``, with the model, checkpoint and retry
    settings filled into the params its Config declares; a client that retries its own calls
    also gets ``sleep`` and ``on_retry``, so its retries are counted in the report."""
    cls = INFERENCE_CLIENTS.get(config.inference_kind)  # unknown kind: a ConfigError listing all
    fields = getattr(getattr(cls, "Config", None), "model_fields", {})
    params = dict(config.client_params)
    if config.model_name is not None and "model" in fields:
        params.setdefault("model", config.model_name)
    if config.checkpoint is not None:
        if "checkpoint" not in fields:
            raise ConfigError(
                f"inference client '{config.inference_kind}' loads no checkpoint; drop "
                "--checkpoint-path/--adapter-path or pick a client that does (local, mock)"
            )
        params.setdefault("checkpoint", config.checkpoint)
    # A client that retries its own calls does it with the eval's settings (and the outer layer
    # then leaves its exhausted calls alone rather than multiply the attempts).
    for name in ("max_attempts", "backoff_s", "max_backoff_s", "batch_size"):
        if name in fields:
            params.setdefault(name, getattr(config, name))
    accepted = inspect.signature(cls).parameters
    hooks = {"sleep": sleep, "on_retry": on_retry}
    runtime = {name: hook for name, hook in hooks.items() if name in accepted}
    try:
        return cls(**params, **runtime)
    except ValidationError as exc:
        from evsys.validation import problems_from_validation_error

        problems = problems_from_validation_error(exc, cls.Config, prefix=("client_params",))
        raise ConfigError(
            problems, header=f"inference client '{config.inference_kind}': bad params"
        ) from None
