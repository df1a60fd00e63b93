"""``evsys eval model --dataset … --output-dir … --inference-kind …``: score one model.

The dataset is a JSONL file of rows or a harbor benchmark directory. Each answer is saved to
--output-dir/generations.jsonl as it arrives, before scoring; predictions.jsonl, summary.json
and summary.md follow. Run again into the same --output-dir (or with --resume) after an eval
that stopped (a judge that is down, an interruption): the saved answers are scored again and
only the missing ones are asked for. Exit codes: 0 scored (calls that exhausted their retries
are scored as wrong and listed in the summary), 1 every call failed, or the model (after
--give-up-after failed calls in a row) or the judge is down (the answers so far are saved), or
with --fail-on-retries any call failed, 2 bad input (a missing file, a
broken line, an unknown client kind, bad client params, an output dir holding another model's
answers), with nothing written.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from evsys.cli.key_values import parse_key_values

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
GIVE_UP_AFTER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subcommands = parser.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    model = subcommands.add_parser(
        "model",
        help="score a model (a checkpoint, a base model or an API model) on an eval set",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = model.add_argument
    add("--dataset", required=True, help="JSONL file of rows, or a benchmark directory")
    add("--output-dir", required=True, help="where predictions.jsonl and the summary go")
    add(
        "--inference-kind",
        default="mock",
        help="registered inference client: mock, local, tinker, openai_compatible, openai, "
        "claude, gemini, … (default: mock)",
    )
    add("--model-name", help="model the client serves: base model name/path or API model id")
    add("--aliases", help="alias file (JSON/YAML): answer → accepted spellings")
    add("--secondary-aliases", help="looser alias file, scored as secondary_pass@k")
    add("--checkpoint-path", help="checkpoint to load (mock checkpoint, LoRA adapter)")
    add("--adapter-path", help="LoRA adapter directory (same as --checkpoint-path)")
    add("--max-tokens", type=int, default=256, help="most tokens per completion (default 256)")
    add("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    add("--max-attempts", type=int, default=3, help="tries per call, first included (default 3)")
    add("--backoff", type=float, default=1.0, help="first retry wait in seconds (default 1)")
    add("--batch-size", type=int, default=8, help="rows generated at once (default 8)")
    add(
        "--give-up-after",
        type=int,
        default=GIVE_UP_AFTER,
        metavar="N",
        help="stop after N calls in a row exhausted their retries: the model is down; the "
        f"answers so far are kept for a re-run (default {GIVE_UP_AFTER})",
    )
    add(
        "--fail-on-retries",
        action="store_true",
        help="exit 1 when any call exhausted its retries (the summary is written anyway)",
    )
    add(
        "--resume",
        action="store_true",
        help="score the answers an earlier eval saved in --output-dir (an error if there are "
        "none), asking the model only for the missing ones; the same --output-dir reuses them "
        "even without it",
    )
    add("--num-samples", type=int, default=1, help="completions per row (default 1)")
    add("--pass-at", default="1", help="comma-separated k of pass@k (default 1)")
    add(
        "--metric",
        action="append",
        help="registered metric, or {kind, params} in YAML, e.g. '{kind: pass_rate, params: "
        "{judge: {kind: claude}}}' (repeatable; default exact_match)",
    )
    add("--breakdown-keys", help="comma-separated row keys to break metrics down by")
    add("--system-prompt", help="system turn for rows without one")
    add("--prompt-template", default="messages", help="messages | qwen | qwen3")
    add("--extract", default="answer", help="answer | slug: how the answer is read")
    add("--limit", type=int, help="score only the first N rows")
    add("--label", help="name of the model in the summary")
    add("--base-url", help="API clients: the API root (openai, openai_compatible: up to /v1)")
    add(
        "--api-key-env",
        help="API clients: NAME of the variable holding the API key (default: the vendor's, "
        "e.g. ANTHROPIC_API_KEY)",
    )
    add(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another client param (YAML value), e.g. --param timeout_s=30",
    )


def execute(args: argparse.Namespace) -> int:
    from evsys.errors import ConfigError, DataError
    from evsys.harness.evaluate import EvalStopped
    from evsys.report import format_problems

    try:
        config = _config(args)
        from evsys.harness import evaluate_model

        artifacts = evaluate_model(config)
    except ConfigError as exc:
        header = f"evsys eval model: {exc.header or 'bad input'}:"
        print(format_problems(exc.problems, header=header), file=sys.stderr)
        return EXIT_BAD_INPUT
    except DataError as exc:
        print(f"evsys eval model: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EvalStopped as exc:
        print(f"evsys eval model: {exc}", file=sys.stderr)
        return EXIT_FAILED
    from evsys.harness import format_summary_markdown

    summary = artifacts.summary
    print(format_summary_markdown(summary), end="")
    print(
        f"\npredictions: {artifacts.paths['predictions']}\nsummary: {artifacts.paths['summary_md']}"
    )
    failures = summary.retry_report.failures
    if not summary.answered and not summary.retry_report.total_refused:  # refusals are answers
        first = min(failures, key=lambda f: (f.index, f.sample), default=None)
        last = f" (row {first.index}: {first.error})" if first is not None else ""
        print(
            f"evsys eval model: every one of the {len(failures)} calls to "
            f"{summary.model} failed{last}; nothing was scored",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if config.fail_on_retries and failures:
        print(
            f"evsys eval model: {len(failures)} calls exhausted their retries (--fail-on-retries)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _config(args: argparse.Namespace) -> Any:
    """The ModelEvalConfig the flags describe; a ConfigError names each bad flag."""
    from pydantic import ValidationError

    from evsys.errors import ConfigError, Problem
    from evsys.harness import ModelEvalConfig
    from evsys.registry import INFERENCE_CLIENTS
    from evsys.validation import problems_from_validation_error

    if args.inference_kind not in INFERENCE_CLIENTS:
        raise INFERENCE_CLIENTS.unknown(args.inference_kind, path="--inference-kind")
    client_params: dict[str, Any] = {}
    for flag, key in (("base_url", "base_url"), ("api_key_env", "api_key_env")):
        if getattr(args, flag) is not None:
            client_params[key] = getattr(args, flag)
    client_params |= parse_key_values(args.param, "--param")
    try:
        pass_at = [int(k) for k in args.pass_at.split(",") if k.strip()]
    except ValueError:
        raise ConfigError(
            Problem("--pass-at", "expected comma-separated integers", value=args.pass_at)
        ) from None
    values = {
        "dataset": args.dataset,
        "output_dir": args.output_dir,
        "resume": args.resume,
        "inference_kind": args.inference_kind,
        "model_name": args.model_name,
        "checkpoint_path": args.checkpoint_path,
        "adapter_path": args.adapter_path,
        "client_params": client_params,
        "aliases": args.aliases,
        "secondary_aliases": args.secondary_aliases,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "num_samples": args.num_samples,
        "pass_at": pass_at,
        "system_prompt": args.system_prompt,
        "prompt_template": args.prompt_template,
        "extract": args.extract,
        "limit": args.limit,
        "max_attempts": args.max_attempts,
        "backoff_s": args.backoff,
        "batch_size": args.batch_size,
        "give_up_after": args.give_up_after,
        "fail_on_retries": args.fail_on_retries,
        "label": args.label,
    }
    if args.metric:
        values["metrics"] = [_metric(text) for text in args.metric]
    if args.breakdown_keys is not None:
        values["breakdown_keys"] = [k for k in args.breakdown_keys.split(",") if k]
    try:
        config = ModelEvalConfig(**values)
    except ValidationError as exc:
        problems = [  # named by flag, as the user typed them
            replace(p, path=_flag(p.path))
            for p in problems_from_validation_error(exc, ModelEvalConfig)
        ]
        raise ConfigError(problems) from None
    if args.metric:
        from evsys.harness.scoring import check_metrics

        check_metrics(config.metrics, path="--metric")  # named by flag here, too
    return config


def _flag(path: str) -> str:
    """The flag of a ModelEvalConfig field's path: ``metrics[0].kind`` → ``--metric[0].kind``."""
    if path.startswith("metrics["):
        return "--metric" + path.removeprefix("metrics")
    return "--" + path.replace("_", "-")


def _metric(text: str) -> dict[str, Any]:
    """``--metric exact_match`` → ``{kind: exact_match}``; ``--metric '{kind: …, params: …}'``
    as it is (a judge metric needs params); ModelEvalConfig checks its fields."""
    if not text.lstrip().startswith("{"):
        return {"kind": text}
    import yaml

    from evsys.errors import ConfigError, Problem

    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise ConfigError(
            Problem("--metric", f"not a YAML mapping ({problem})", value=text)
        ) from None
    if not isinstance(spec, dict):
        raise ConfigError(Problem("--metric", "expected {kind, params}", value=text))
    return spec
