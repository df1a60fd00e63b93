"""Post-training eval: generate for each eval row with the trained model and score the outputs."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from evsys.checks import metric_name
from evsys.clients.usage import judge_usage, mark, usage_since
from evsys.config import DataConfig, ExperimentConfig, InferenceSpec, MetricSpec
from evsys.data.sources import apply_transforms, load_rows
from evsys.files import StorageError, write_jsonl_atomically
from evsys.harness.retry import RefusedAnswer, answer_or_refusal
from evsys.interrupts import reraise_if_interruption
from evsys.protocols import DataStore, InferenceClient, Row
from evsys.registry import BACKENDS, INFERENCE_CLIENTS, METRICS
from evsys.rows import indices_by_value, prompt_messages
from evsys.training import progress_bar

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"


@contextmanager
def best_effort(what: str, run_name: str, errors: dict[str, Any]) -> Iterator[None]:
    """Eval is best effort: it never fails a trained run; a failure is logged and kept in
    ``errors`` as ``<what>_error``. An interruption (a signal, submitit's timeout) is no failure
    of eval: it goes on up and ends the run. So does a disk that is full (a StorageError): the
    run fails with it, naming the file, rather than go on writing into a full disk."""
    try:
        yield
    except Exception as exc:
        reraise_if_interruption(exc)
        if isinstance(exc, StorageError):
            raise
        log.warning("%s of run %s failed and was skipped: %s", what, run_name, exc)
        errors[f"{what}_error"] = f"{type(exc).__name__}: {exc}"


def eval_rows(config: ExperimentConfig, store: DataStore, train_rows: list[Row]) -> list[Row]:
    """eval.eval_data, else data.eval_path, else the training rows; capped at eval.n_samples."""
    if config.eval.eval_data is not None:
        data: DataConfig = config.eval.eval_data
        rows = apply_transforms(load_rows(data, store), data.transforms)
    elif config.data.eval_path is not None:
        rows = load_rows(config.data, store, path=config.data.eval_path)
        rows = apply_transforms(rows, config.data.transforms)
    else:
        rows = train_rows
    return rows[: config.eval.n_samples]


def build_inference_client(config: ExperimentConfig, checkpoint: str | None) -> InferenceClient:
    """eval.inference, else the backend's own client; pointed at the run's model and checkpoint."""
    spec = config.eval.inference or InferenceSpec(
        kind=BACKENDS.get(config.backend.kind).inference_client
    )
    params = dict(spec.params)
    fields = getattr(INFERENCE_CLIENTS.config_class(spec.kind), "model_fields", {})
    if spec.kind == BACKENDS.get(config.backend.kind).inference_client:
        # The backend's own client shares its settings (the service it talks to, the device it
        # runs on), unless the eval config sets them itself.
        shared = {k: v for k, v in config.backend.params.items() if k in fields}
        params = shared | params
    # Fill the run's model and checkpoint in, unless the config names others explicitly.
    if "model" in fields and params.get("model") is None:
        params["model"] = config.model.name
    if "checkpoint" in fields and params.get("checkpoint") is None:
        params["checkpoint"] = checkpoint
    if "renderer" in fields and params.get("renderer") is None:  # renders as training did
        params["renderer"] = config.model.renderer_name
    return INFERENCE_CLIENTS.build(spec.kind, params)


def evaluate(
    config: ExperimentConfig,
    client: InferenceClient,
    rows: list[Row],
    run_dir: Path,
    label: str = "eval",
    errors: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Score ``client`` on ``rows`` with every metric of ``eval.metrics``; write predictions.
    A metric that fails costs only its own score (kept in ``errors``)."""
    cfg = config.eval
    since = mark(client)
    predictions = generate_all(
        client, rows, max_tokens=cfg.max_tokens, temperature=cfg.temperature, label=label
    )
    usage = usage_since(client, since, prefix="eval")  # a hosted model's tokens, latency, cost
    write_predictions(run_dir / PREDICTIONS, rows, predictions)
    scores = score_metrics(
        cfg.metrics, predictions, rows, prefix="eval", run_name=config.name, errors=errors
    )
    return scores | usage


def score_metrics(
    specs: list[MetricSpec],
    predictions: list[Any],
    rows: list[Row],
    *,
    prefix: str | None,
    run_name: str,
    breakdown_keys: Sequence[str] = (),
    errors: dict[str, Any] | None = None,
) -> dict[str, float]:
    """``{<prefix>/<metric>[/<key>=<value>]: score}`` of every metric of ``specs``. One metric
    that fails is logged and kept in ``errors`` as ``metric_<name>_error``; the others score."""
    scores: dict[str, float] = {}
    taken: list[str] = []  # names as evsys.checks declares them, whichever metrics fail
    scored: list[Any] = []  # the metrics that scored: a judge's calls are reported together
    for spec in specs:
        name = metric_name(spec.kind, spec.params, taken, prefix=prefix)
        taken.append(name)
        with best_effort(f"metric_{name}", run_name, {} if errors is None else errors):
            metric = METRICS.build(spec.kind, spec.params)
            scores[name] = metric.compute(predictions=predictions, targets=rows)
            for key in breakdown_keys:
                for value, indices in indices_by_value(rows, key).items():
                    scores[f"{name}/{key}={value}"] = metric.compute(
                        predictions=[predictions[i] for i in indices],
                        targets=[rows[i] for i in indices],
                    )
            scored.append(metric)
    # What the metrics that asked a judge model (pass_rate on llm_judge tasks) cost.
    return scores | judge_usage(scored, f"{prefix}/judge" if prefix else "judge")


def generate_all(
    client: InferenceClient,
    rows: list[Row],
    *,
    max_tokens: int,
    temperature: float,
    label: str = "eval",
) -> list[str]:
    prompts = [prompt_messages(row) for row in rows]
    batch = getattr(client, "generate_batch", None)
    if batch is not None:  # engines that batch (local, tinker) are much faster this way
        return list(batch(prompts=prompts, max_tokens=max_tokens, temperature=temperature))
    concurrently = getattr(client, "generate_concurrently", None)
    if concurrently is not None:  # hosted APIs: several requests in flight, up to their cap
        return list(concurrently(prompts, max_tokens=max_tokens, temperature=temperature))
    outputs = []
    with progress_bar(label, len(prompts)) as advance:
        for prompt in prompts:
            generate = partial(
                client.generate, prompt=prompt, max_tokens=max_tokens, temperature=temperature
            )
            outputs.append(answer_or_refusal(generate))  # a refusal: that row, not the eval
            advance()
    return outputs


def write_predictions(path: Path, rows: list[Row], predictions: list[str]) -> None:
    """One record per row: its prompt, the prediction and the target; a row the model refused
    also says why (``refused``)."""
    records = (
        {
            "index": index,
            "id": row.get("id"),
            "prompt": prompt_messages(row),
            "prediction": prediction,
            "target": row.get("answer", row.get("target_assistant")),
            **({"refused": prediction.reason} if isinstance(prediction, RefusedAnswer) else {}),
        }
        for index, (row, prediction) in enumerate(zip(rows, predictions, strict=True))
    )
    write_jsonl_atomically(path, records)
