"""Local SFT against a plain TRL script: tokens/s, loss, FLOP/s, where a step's time goes.

    python bench/sft.py [--model smollm2_135m|tiny] [--steps 8] [--repeats 2] [--sets bundled,varied]
                        [--device cpu|cuda] [--dtype float32|bfloat16]

For each row set (the bundled tool_selection rows; a varied-length chat set drawn here, seeded):

1. Tokens/s: evsys's local SFT through the real lifecycle (compose_and_validate + run_arm, its
   default speed settings) against a plain TRL script (SFTTrainer defaults, the same weights,
   rows, LoRA, batch size, max length, precision, assistant-only loss, steps, seed). Sides
   alternate (plain, evsys, evsys, plain, …), each run a process of its own; medians. Tokens are
   TRL's ``num_tokens`` (the rows' tokens, padding left out), after ``--warmup`` steps. The mean
   training loss over the same steps (so over the same tokens: both sides see the same batches)
   is printed for each side. Target: ≥ 2×.
2. Where a step's time goes, for each layout on the same batches: data (the collator), forward
   (the backbone), LM head + loss (forward and backward), backward (the backbone), optimizer;
   the FLOPs the step executes, its FLOP/s against this machine's own matmul FLOP/s measured in
   the same run, and peak memory.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sft_profile import profile  # noqa: E402

SFT = {"batch_size": 4, "lora_rank": 8}
MAX_LENGTH = {"bundled": 128, "varied": 256}


def loss_clock() -> list[tuple[int, float, float, float]]:
    """(step, time, num_tokens, loss) at every training log, on both sides alike."""
    import time

    import transformers.trainer
    from transformers import TrainerCallback

    marks: list[tuple[int, float, float, float]] = []

    class Clock(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if logs and "loss" in logs and "num_tokens" in logs:
                marks.append(
                    (state.global_step, time.perf_counter(), logs["num_tokens"], logs["loss"])
                )

    transformers.trainer.DEFAULT_CALLBACKS.append(Clock())
    return marks


def sft_evsys(spec: dict[str, Any]) -> dict[str, Any]:
    from evsys.compose.compose import compose_and_validate
    from evsys.run.runner import run_arm

    marks = loss_clock()
    _, config = compose_and_validate(spec["overrides"])
    outcome = run_arm(config, Path(spec["tmp"]) / "evsys-run", overrides=spec["overrides"])
    if outcome.record["status"] != "completed":
        raise SystemExit(f"evsys run failed: {outcome.record['error']}")
    return {"marks": marks, "applied": outcome.record["extras"].get("sft_speed")}


def sft_plain(spec: dict[str, Any]) -> dict[str, Any]:
    """What a user would write with TRL directly: SFTTrainer's defaults, the same settings."""
    import dataclasses

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    marks = loss_clock()
    torch.set_num_threads(spec["threads"])  # the threads evsys sized, so threads are not compared
    dtype = getattr(torch, spec["dtype"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    set_seed(spec["seed"])
    rows = [json.loads(line) for line in Path(spec["rows"]).read_text().splitlines()]
    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    checkpointing = next(
        k for k in ("activation_checkpointing", "gradient_checkpointing") if k in fields
    )
    args = SFTConfig(
        output_dir=str(Path(spec["tmp"]) / "plain-run"),
        seed=spec["seed"],
        data_seed=spec["seed"],
        learning_rate=1e-4,
        lr_scheduler_type="linear",
        per_device_train_batch_size=SFT["batch_size"],
        max_steps=spec["steps"],
        max_length=spec["max_length"],
        assistant_only_loss=True,
        logging_steps=1,
        save_strategy="no",
        bf16=spec["dtype"] == "bfloat16",
        fp16=False,
        use_cpu=spec["device"] == "cpu",
        report_to="none",
        disable_tqdm=True,
        **{checkpointing: False},  # evsys's default too
    )
    lora = LoraConfig(
        r=SFT["lora_rank"],
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
    )
    trainer.train()
    return {"marks": marks}


SIDES = {"sft-evsys": sft_evsys, "sft-plain": sft_plain, "profile": profile}


def _run_side(side: str, spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Run one side in a process of its own (its own peak RSS); its result."""
    import subprocess

    spec_path, result_path = tmp / f"{side}.spec.json", tmp / f"{side}.result.json"
    spec_path.write_text(json.dumps(spec))
    command = [sys.executable, str(Path(__file__).resolve()), "--side", side]
    command += ["--spec", str(spec_path), "--result", str(result_path)]
    done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(
            f"{side} failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return json.loads(result_path.read_text())


def varied_rows(path: Path, words_from: list[str], n: int = 96) -> None:
    """Chat rows of varied length (1–2 turns, 4–90 words a message), seeded, as JSONL."""
    rng = random.Random(0)

    def text(low: int, high: int) -> str:
        return " ".join(rng.choice(words_from) for _ in range(rng.randint(low, high)))

    lines = []
    for _ in range(n):
        messages = []
        for _ in range(rng.randint(1, 2)):
            messages += [
                {"role": "user", "content": text(4, 60)},
                {"role": "assistant", "content": text(4, 90)},
            ]
        lines.append(json.dumps({"messages": messages}) + "\n")
    path.write_text("".join(lines))


def bundled_rows(model: str, tmp: Path) -> tuple[Any, Path]:
    from local import inputs

    config, train, _ = inputs(model, tmp)
    return config, train


def summary(runs: list[dict[str, Any]], warmup: int) -> dict[str, float]:
    speeds, losses = [], []
    for run in runs:
        by_step = {int(step): (t, tokens, loss) for step, t, tokens, loss in run["marks"]}
        (t0, n0, _), (t1, n1, _) = by_step[warmup], by_step[max(by_step)]
        speeds.append((n1 - n0) / (t1 - t0))
        losses.append(statistics.fmean(loss for _, _, loss in by_step.values()))
    return {
        "speed": statistics.median(speeds),
        "speeds": speeds,
        "loss": statistics.median(losses),
        "tokens": float(n1),
        "rss": max(r["peak_rss_mib"] for r in runs),
        "first": statistics.median(min(r["marks"])[3] for r in runs),  # before any update
        "per_step": [round(loss, 4) for *_, loss in sorted(runs[0]["marks"])],
    }


def bench_set(name: str, rows: Path, args: argparse.Namespace, config: Any, tmp: Path) -> float:
    from evsys.backends.local.models import resolve_model_path
    from evsys.cpus import torch_threads

    max_length = MAX_LENGTH[name]
    overrides = [
        "backend=local",
        f"model={args.model}",
        "data=tool_selection",
        "eval=none",
        "metadata.success_metric=null",
        f"algorithm.params.max_steps={args.steps}",
        # The plain script's settings: the default experiment's recipe trains at 2e-3.
        "algorithm.params.learning_rate=1e-4",
        "algorithm.params.lr_schedule=linear",
        "algorithm.params.warmup_ratio=0",
        f"algorithm.params.max_seq_length={max_length}",
        *(f"algorithm.params.{key}={value}" for key, value in SFT.items()),
        f"backend.params.device={args.device}",
        f"backend.params.dtype={args.dtype}",
    ]
    overrides += args.evsys_override
    if name == "varied":
        overrides += [f"data.path={rows}", "data.transforms=[]", "data.eval_path=null"]
    spec = {
        "tmp": str(tmp),
        "overrides": overrides,
        "model_dir": str(resolve_model_path(config.model.name)),
        "rows": str(rows),
        "seed": config.seed,
        "steps": args.steps,
        "max_length": max_length,
        "device": args.device,
        "dtype": args.dtype,
        "threads": torch_threads()[0],
        "batch_size": SFT["batch_size"],
        "profile_batches": args.profile_batches,
    }
    runs: dict[str, list[dict[str, Any]]] = {"sft-plain": [], "sft-evsys": []}
    for i in range(args.repeats):
        for side in list(runs)[:: 1 if i % 2 == 0 else -1]:
            runs[side].append(_run_side(side, spec, tmp))
    plain, evsys = (summary(runs[side], args.warmup) for side in runs)
    print(
        f"\n{name} rows, {config.model.name}: {args.steps} steps of {SFT['batch_size']} rows, "
        f"max_length {max_length}, LoRA r={SFT['lora_rank']}, {args.dtype} {args.device}, "
        f"{spec['threads']} threads; steps {args.warmup + 1}..{args.steps}, median of "
        f"{args.repeats} runs a side, sides alternated"
    )
    print(f"  evsys applied: {runs['sft-evsys'][0]['applied']}")
    print(
        f"{'side':<30} {'tokens/s':>9} {'runs':>17} {'step-1 loss':>11} {'mean loss':>10} "
        f"{'peak RSS':>10}"
    )
    for label, side in [("plain TRL script (baseline)", plain), ("evsys run_arm", evsys)]:
        each = "/".join(f"{s:.0f}" for s in side["speeds"])
        print(
            f"{label:<30} {side['speed']:>9.0f} {each:>17} {side['first']:>11.4f} "
            f"{side['loss']:>10.4f} "
            f"{side['rss']:>7.0f} MiB"
        )
    print(
        f"  loss per step, plain: {plain['per_step']}\n  loss per step, evsys: {evsys['per_step']}"
    )
    if plain["tokens"] != evsys["tokens"]:
        print(f"note: different token counts ({evsys['tokens']} vs {plain['tokens']})")
    ratio = evsys["speed"] / plain["speed"]
    print(f"ratio: {ratio:.2f}×   target ≥ 2×  {'ok' if ratio >= 2 else 'MISSED'}")
    if args.profile_batches:
        print(_run_side("profile", spec, tmp)["report"])
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2_135m", "tiny"], default="smollm2_135m")
    parser.add_argument("--steps", type=int, default=8, help="SFT steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side (median)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of tokens/s")
    parser.add_argument("--sets", default="bundled,varied", help="bundled and/or varied")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument(
        "--profile-batches", type=int, default=3, help="batches timed phase by phase (0: none)"
    )
    parser.add_argument(
        "--evsys-override",
        action="append",
        default=[],
        help="an override for evsys's side, e.g. backend.params.sft_speed.shared_prefix=false",
    )
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        import resource

        spec = json.loads(Path(args.spec).read_text())
        result = SIDES[args.side](spec)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        Path(args.result).write_text(json.dumps(result))
        return
    if args.steps <= args.warmup:
        parser.error(f"--steps ({args.steps}) must be more than --warmup ({args.warmup})")
    import os

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        os.chdir(tmp)  # an empty project: evsys's bundled config, for every side
        config, bundled = bundled_rows(args.model, tmp)
        words = [
            w for line in bundled.read_text().splitlines() for w in line.split() if w.isalpha()
        ]
        varied = tmp / "varied.jsonl"
        varied_rows(varied, words)
        ratios = {}
        for name_ in args.sets.split(","):
            ratios[name_] = bench_set(
                name_, bundled if name_ == "bundled" else varied, args, config, tmp
            )
        print("\nratios: " + ", ".join(f"{k} {v:.2f}×" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
