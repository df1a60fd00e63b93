"""What validation can know about a run beyond its schema, before anything runs.

- the metrics a run will report, named as ``run_result.json`` names them: each recipe declares
  its own (``metrics``, or ``result_metrics(params, backend)`` when they depend on its params),
  eval, benchmarks, baselines and continual stages add theirs (with a hosted client or an LLM
  judge, their usage too: ``…/cost_usd``, ``…/latency_p50_s``, ``…/latency_p95_s``,
  ``…/tokens_out``). ``metadata.success_metric`` is not checked against them: a custom recipe,
  callback or backend may report more, so an unreported success metric is reported after the
  sweep, from what its arms reported (:func:`evsys.sweep.conclusion.unreported_metric`);
- whether a run's eval can compute each of its metrics: it generates one completion per row, so
  a metric of sampled completions (``pass_at_k``) or of rewards (``mean_reward``) is refused.

Names that only the data can tell (a breakdown's values, a benchmark named in its own
``metadata.yaml`` that cannot be read here) are ``*`` patterns.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Container, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from evsys.clients.usage import USAGE_METRICS, reports_usage, usage_names
from evsys.config import BenchmarkSpec, ExperimentConfig, MetricSpec, baseline_model
from evsys.errors import Problem
from evsys.registry import ALGORITHMS, BACKENDS, CALLBACKS, METRICS, closest, resolve_algorithm

EVAL_INPUT = "completion"  # what a run's eval and its benchmarks generate: one per row
_WHY_NOT = {
    "samples": "it scores several sampled completions per row, and a run's eval generates one; "
    "score a checkpoint with `evsys eval model --num-samples N --pass-at K` instead",
    "reward": "it averages rewards, and a run's eval generates completions, not rewards; "
    "an RL run reports its own train/final_reward_mean",
}


_metrics_from_code: ContextVar[bool] = ContextVar("evsys_metrics_from_code", default=False)


@contextmanager
def metrics_from_code() -> Iterator[None]:
    """Validation inside: training or benchmarks come from Python (``evsys.Experiment``'s
    ``train_fn``, ``benchmarks``), so what a run reports cannot be read from its config and the
    metrics a callback watches are not checked against it."""
    token = _metrics_from_code.set(True)
    try:
        yield
    finally:
        _metrics_from_code.reset(token)


def metric_name(
    kind: str, params: dict[str, Any], taken: Container[str], prefix: str | None = "eval"
) -> str:
    """``<prefix>/<kind>`` (``<kind>`` without a prefix); the same metric twice with other
    params gets them as a suffix."""
    name = f"{prefix}/{kind}" if prefix else kind
    if name in taken and params:
        name += "[" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + "]"
    return name


def check_run(config: ExperimentConfig) -> list[Problem]:
    """Problems the schema cannot see: metrics eval cannot compute, unlogged watched metrics."""
    return list(_eval_input_problems(config)) + list(_watched_metric_problems(config))


def reported_metrics(config: ExperimentConfig) -> list[str]:
    """The keys ``run_result.json`` ``metrics`` may hold for ``config`` (``*``: any text)."""
    recipe = config.algorithm
    training = recipe_metrics(recipe.kind, recipe.params, config.backend.kind)
    scored = _scored_metrics(config)
    client = _eval_client_kind(config)
    tests = [name for b in _tests(config) for name in _benchmark_metrics(config, b, "test", client)]
    names = list(training)
    if config.continual is not None:
        names += _continual_metrics(config, training, scored, tests)
    else:
        names += [f"eval/{m}" for m in scored] + tests
        if config.eval.baseline:
            names += [f"baseline/eval/{m}" for m in scored] + [f"baseline/{t}" for t in tests]
    for spec in config.metadata.benchmark:
        if "val" in spec.tags:
            names += _benchmark_metrics(config, spec, "val")
        for entry in spec.models if "test" in spec.tags else []:
            model = baseline_model(entry)
            scored = _benchmark_metrics(config, spec, "test", model.kind)
            names += [f"{t}@{model.label}" for t in scored]
    return list(dict.fromkeys(names))


def recipe_metrics(recipe: str, params: dict[str, Any], backend: str) -> list[str]:
    """What a recipe's training reports on ``backend``: the recipe's ``metrics`` (or its
    ``result_metrics(params, backend)``) and the backend implementation's own ``metrics``."""
    recipe_cls = ALGORITHMS.get(recipe)
    declare = getattr(recipe_cls, "result_metrics", None)
    names = list(declare(params, backend) if declare else getattr(recipe_cls, "metrics", ()))
    implementation = resolve_algorithm(recipe, backend)
    if implementation is not recipe_cls:
        names += getattr(implementation, "metrics", ())
    return names


def _watched_metric_problems(config: ExperimentConfig) -> Iterator[Problem]:
    """A callback's params that name a validation metric (the fields its class lists in
    ``watches_val_metrics``) must name one the run's ``val`` benchmarks log."""
    if _metrics_from_code.get():
        return  # the benchmarks come from Python: their names are not in the config
    val = [
        name
        for spec in config.metadata.benchmark
        if "val" in spec.tags
        for name in _benchmark_metrics(config, spec, "val")
    ]
    for index, spec in enumerate(config.callbacks):
        for field in getattr(CALLBACKS.get(spec.kind), "watches_val_metrics", ()):
            metric = spec.params.get(field)
            if not isinstance(metric, str) or _matches(metric, val):
                continue
            yield Problem(
                path=f"callbacks[{index}].params.{field}",
                message="no `val` benchmark of metadata.benchmark logs this metric"
                if val
                else "the run validates nothing: add a `val` benchmark (tags: [val], run_every) "
                "to metadata.benchmark",
                value=metric,
                expected="one of: " + ", ".join(val) if val else None,
                suggestion=closest(metric, val),
            )


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


# -- eval ------------------------------------------------------------------------------------


def _eval_input_problems(config: ExperimentConfig) -> list[Problem]:
    where: list[tuple[str, list[MetricSpec]]] = [("eval.metrics", config.eval.metrics)]
    for index, benchmark in enumerate(config.metadata.benchmark):
        where.append((f"metadata.benchmark[{index}].metrics", benchmark.metrics))
    problems = []
    for path, specs in where:
        for index, spec in enumerate(specs):
            needs = _input_of(spec)
            if needs != EVAL_INPUT:
                problems.append(
                    Problem(
                        path=f"{path}[{index}].kind",
                        message=f"metric '{spec.kind}' cannot score a run's eval: "
                        + _WHY_NOT.get(needs, f"it takes {needs} predictions"),
                        value=spec.kind,
                        expected="a metric of one completion per row, e.g. exact_match",
                    )
                )
    return problems


def _input_of(spec: MetricSpec) -> str:
    return getattr(METRICS.get(spec.kind), "predictions", EVAL_INPUT)


def _names(specs: list[MetricSpec], prefix: str | None = None) -> list[str]:
    taken: list[str] = []
    for spec in specs:
        if _input_of(spec) == EVAL_INPUT:
            taken.append(metric_name(spec.kind, spec.params, taken, prefix=prefix))
    return taken


def _judge_usage(specs: list[MetricSpec], prefix: str | None = None) -> list[str]:
    """``<prefix>/judge/cost_usd``, …: the usage of a hosted judge that a metric asks."""
    for spec in specs:
        judge = spec.params.get("judge") if spec.kind == "pass_rate" else None
        if isinstance(judge, dict) and reports_usage(str(judge.get("kind"))):
            return usage_names(f"{prefix}/judge" if prefix else "judge")
    return []


def _eval_client_kind(config: ExperimentConfig) -> str | None:
    """The inference client a run's eval and test benchmarks generate with."""
    if config.eval.inference is not None:
        return config.eval.inference.kind
    try:
        return getattr(BACKENDS.get(config.backend.kind), "inference_client", None)
    except Exception:  # an unknown backend is reported by schema validation
        return None


def _client_usage(kind: str | None, prefix: str | None = None) -> list[str]:
    """``<prefix>/cost_usd``, …: what a hosted client's calls cost (none for local engines)."""
    if kind is None or not reports_usage(kind):
        return []
    return usage_names(prefix) if prefix else list(USAGE_METRICS)


def _scored_metrics(config: ExperimentConfig) -> list[str]:
    """Eval's metric names without their ``eval/`` prefix; none when eval does not run."""
    if not config.eval.enabled:
        return []
    metrics = config.eval.metrics
    return [
        *_names(metrics),
        *_judge_usage(metrics),
        *(_client_usage(_eval_client_kind(config)) if metrics else []),
    ]


# -- benchmarks ------------------------------------------------------------------------------


def _tests(config: ExperimentConfig) -> list[BenchmarkSpec]:
    return [b for b in config.metadata.benchmark if "test" in b.tags]


def _benchmark_metrics(
    config: ExperimentConfig, spec: BenchmarkSpec, split: str, client: str | None = None
) -> list[str]:
    """``<split>/<name>/<metric>`` and its breakdowns ``…/<key>=<value>``; the usage of the
    ``client`` that generates (a hosted one) and of a judge a metric asks."""
    prefix = f"{split}/{_benchmark_name(spec)}"
    # Without metrics of its own, a benchmark of harbor tasks also scores `pass_rate` (their own
    # verifiers), which only its rows can tell: see evsys.benchmarks.
    metrics = spec.metrics or [MetricSpec(kind="pass_rate"), *config.eval.metrics]
    names = _names(metrics, prefix=prefix)
    keys = spec.breakdown_keys or ["*"]  # metadata.yaml may name them
    breakdowns = [f"{name}/{key}=*" for name in names for key in keys]
    usage = _client_usage(client, prefix) + _judge_usage(metrics, prefix)
    return names + breakdowns + usage


def _benchmark_name(spec: BenchmarkSpec) -> str:
    """``name``, else the ``name`` of its ``metadata.yaml``, else its directory's name; ``*``
    when the metadata cannot be read here (a path relative to another data store)."""
    if spec.name:
        return spec.name
    directory = Path(spec.path or "")
    try:
        import yaml

        metadata = yaml.safe_load((directory / "metadata.yaml").read_text()) or {}
    except FileNotFoundError:
        return directory.name if directory.is_dir() else "*"
    except (OSError, ValueError, yaml.YAMLError):
        return "*"  # reading the benchmark at start reports it
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return str(name) if name else directory.name


# -- continual -------------------------------------------------------------------------------


def _continual_metrics(
    config: ExperimentConfig, training: list[str], scored: list[str], tests: list[str]
) -> list[str]:
    """See :mod:`evsys.run.continual`: per stage, after the last stage, and their summary."""
    assert config.continual is not None
    sets = [stage.name for stage in config.continual.datasets]
    after = [f"eval/{s}/{m}" for s in sets for m in scored] + tests
    names = after + [f"eval/{m}" for m in scored]
    names += [f"continual/backward_transfer/{m}" for m in scored]
    for index, stage in enumerate(config.continual.datasets):
        names += [f"stage/{index}_{stage.name}/{m}" for m in [*training, *after]]
    if config.eval.baseline:
        names += [f"baseline/{m}" for m in after]
    return names
