"""``evaluate_model``: generate for every row (with retries), score, write predictions and summary.

Output directory::

    predictions.jsonl   one line per row: prompt, expected answer, completions, extracted answers,
                        how each matched, the error of every call that failed and why the model
                        refused each sample it declined (``refused``)
    summary.json        metrics, counts, the retry report
    summary.md          the same for people (format_summary_markdown)
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evsys.clients.usage import mark, usage_since
from evsys.errors import ConfigError, DataError
from evsys.files import write_json_atomically, write_jsonl_atomically, write_text_atomically
from evsys.harness.aliases import AliasMatcher
from evsys.harness.config import ModelEvalConfig
from evsys.harness.prompts import load_eval_dataset, render_prompt
from evsys.harness.retry import (
    Refused,
    RetriesExhausted,
    RetryFailure,
    RetryReport,
    call_with_retry,
)
from evsys.harness.scoring import build_metrics, score_rows
from evsys.harness.summary import format_summary_markdown
from evsys.protocols import InferenceClient
from evsys.registry import INFERENCE_CLIENTS
from evsys.training import progress_bar

Row = dict[str, Any]
PREDICTIONS, SUMMARY_JSON, SUMMARY_MD = "predictions.jsonl", "summary.json", "summary.md"


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "inference_kind": self.inference_kind,
            "dataset": self.dataset,
            "n_rows": self.n_rows,
            "num_samples": self.num_samples,
            "metrics": self.metrics,
            "retry_report": self.retry_report.to_dict(),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class EvalArtifacts:
    summary: EvalSummary
    records: list[Row]
    paths: dict[str, Path] = field(default_factory=dict)
    """``predictions``, ``summary_json``, ``summary_md`` when an output_dir was given."""


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
    why in its prediction's ``refused``. Bad
    input (a missing dataset or alias file, a broken line, an unknown client or metric) raises
    ConfigError/DataError before any call is made. A hosted model's usage is reported as
    ``cost_usd``, ``latency_p50_s``, …, a judge model's (a metric that asks one) as
    ``judge/cost_usd``, …
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
    since = mark(client)
    samples = generate_samples(client, prompts, rows, config, report, sleep=sleep)
    usage = usage_since(client, since)  # a hosted model's cost_usd, latency_p50_s, …
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
    )
    artifacts = EvalArtifacts(summary=summary, records=records)
    if config.output_dir is not None:
        artifacts.paths = write_outputs(Path(config.output_dir), summary, records)
    return artifacts


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


def generate_samples(
    client: InferenceClient,
    prompts: Sequence[Any],
    rows: Sequence[Row],
    config: ModelEvalConfig,
    report: RetryReport,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> list[list[str | None]]:
    """``num_samples`` completions per prompt; None where a call exhausted its retries or the
    model refused (each recorded in ``report``)."""
    jobs = [(i, s) for i in range(len(prompts)) for s in range(config.num_samples)]
    out: list[list[str | None]] = [[None] * config.num_samples for _ in prompts]

    def retried(fn: Callable[[], Any]) -> Any:
        return call_with_retry(
            fn,
            max_attempts=config.max_attempts,
            backoff_s=config.backoff_s,
            max_backoff_s=config.max_backoff_s,
            on_retry=report.record_retry,
            sleep=sleep,
        )

    def failed(job: tuple[int, int], exc: RetriesExhausted) -> None:
        index, sample = job
        report.record_failure(
            RetryFailure(index, rows[index].get("id"), sample, exc.attempts, exc.error)
        )

    batch = getattr(client, "generate_batch", None)
    chunks = [jobs[i : i + config.batch_size] for i in range(0, len(jobs), config.batch_size)]
    with progress_bar(f"eval {config.model_label}", len(jobs)) as advance:
        if batch is not None:  # batching engines: one call per chunk of rows
            for chunk in chunks:
                try:
                    texts = retried(
                        lambda chunk=chunk: batch(
                            prompts=[prompts[i] for i, _ in chunk],
                            max_tokens=config.max_tokens,
                            temperature=config.temperature,
                        )
                    )
                except RetriesExhausted as exc:
                    for job in chunk:
                        failed(job, exc)
                else:
                    for (i, s), text in zip(chunk, texts, strict=True):
                        out[i][s] = text
                advance(len(chunk), failures=report.total_failures)
            return out

        sample = getattr(client, "sample", None)
        if sample is not None and config.num_samples > 1:
            # Hosted APIs sample a row's n completions in one request where they can.
            def row(index: int) -> None:
                try:
                    out[index] = list(
                        retried(
                            lambda: sample(
                                prompt=prompts[index],
                                n=config.num_samples,
                                max_tokens=config.max_tokens,
                                temperature=config.temperature,
                            )
                        )
                    )
                except Refused as exc:  # the samples it gave still count
                    out[index] = list(exc.completions)
                    report.record_refused(index, rows[index].get("id"), exc)
                except RetriesExhausted as exc:
                    for s in range(config.num_samples):
                        failed((index, s), exc)

            with ThreadPoolExecutor(max_workers=config.batch_size) as pool:
                for future in as_completed([pool.submit(row, i) for i in range(len(prompts))]):
                    future.result()
                    advance(config.num_samples, failures=report.total_failures)
            return out

        def one(job: tuple[int, int]) -> None:
            index, sample = job
            try:
                out[index][sample] = retried(
                    lambda: client.generate(
                        prompt=prompts[index],
                        max_tokens=config.max_tokens,
                        temperature=config.temperature,
                    )
                )
            except Refused as exc:
                report.record_refused(index, rows[index].get("id"), exc, first=sample)
            except RetriesExhausted as exc:
                failed(job, exc)

        # Per-call clients (APIs): batch_size requests in flight at once.
        with ThreadPoolExecutor(max_workers=config.batch_size) as pool:
            try:
                for future in as_completed([pool.submit(one, job) for job in jobs]):
                    future.result()
                    advance(failures=report.total_failures)
            except BaseException:
                # Interrupted (a signal) or failed: drop the queued calls instead of making them.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return out
