"""Local backend speed against plain TRL and per-row generation, measured side by side in one run.

    python bench/local.py [--model smollm2_135m|tiny] [--steps 8] [--prompts 64] [--per-row 16]
                          [--repeats 2] [--busy N] [--cases sft,eval,contended]

1. SFT: evsys's local SFT through the real lifecycle (compose_and_validate + run_arm) against a
   plain TRL script (SFTTrainer, SFTConfig, the same LoraConfig) on the same weights, rows,
   precision (float32, CPU), max_length, batch size, steps and seed. Tokens/s from TRL's own
   ``num_tokens``, after ``--warmup`` steps. Target: ≥ 0.97× the plain script.
2. Eval: ``LocalInferenceClient.generate_batch`` on ``--prompts`` held-out prompts against one
   ``generate`` call per row on the first ``--per-row`` of them (greedy, 32 new tokens), compared
   per prompt. Target: ≥ 4×; the outputs must be identical.
3. Contended SFT: evsys's local SFT while ``--busy`` processes spin on the CPUs, as sibling arms on
   one machine do: torch's default thread count (a thread per core, as before evsys sized it)
   against the threads evsys sizes from the arm's share of the CPUs (``EVSYS_ARM_CPUS``, the CPUs
   divided by the busy processes plus the arm, as a launcher running them all would set it).
   Tokens/s as in 1. Target: sized ≥ 1.5× default. Run it on an otherwise idle machine.

Every side runs in a subprocess of its own, so its peak RSS is its own; the model load is not
timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SFT = {"batch_size": 4, "max_seq_length": 128, "lora_rank": 8}
MODELS = {"smollm2_135m", "tiny"}


# -- the sides, each run in its own process ----------------------------------------------------


def step_clock() -> list[tuple[int, float, float]]:
    """(step, time, num_tokens) at every training log, from a callback every Trainer gets.

    Appended to transformers' default callbacks so both sides are timed by the same code
    without evsys knowing about it.
    """
    import transformers.trainer
    from transformers import TrainerCallback

    marks: list[tuple[int, float, float]] = []

    class StepClock(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if logs and "loss" in logs and "num_tokens" in logs:
                marks.append((state.global_step, time.perf_counter(), float(logs["num_tokens"])))

    transformers.trainer.DEFAULT_CALLBACKS.append(StepClock())
    return marks


def sft_evsys(spec: dict[str, Any]) -> dict[str, Any]:
    from evsys.compose.compose import compose_and_validate
    from evsys.run.runner import run_arm

    marks = step_clock()
    overrides = spec["overrides"]
    _, config = compose_and_validate(overrides)
    outcome = run_arm(config, Path(spec["tmp"]) / "evsys-run", overrides=overrides)
    if outcome.record["status"] != "completed":
        raise SystemExit(f"evsys run failed: {outcome.record['error']}")
    return {"marks": marks}


def sft_plain(spec: dict[str, Any]) -> dict[str, Any]:
    """What a user would write with TRL directly, with evsys's defaults spelled out."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    marks = step_clock()
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    set_seed(spec["seed"])
    rows = [json.loads(line) for line in Path(spec["train_rows"]).read_text().splitlines()]
    # SFTConfig turns checkpointing on by default; transformers 5.2x renamed the field.
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
        max_length=SFT["max_seq_length"],
        assistant_only_loss=True,
        logging_steps=1,
        save_strategy="no",
        bf16=False,
        fp16=False,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        **{checkpointing: False},
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


def generation(spec: dict[str, Any], batched: bool) -> dict[str, Any]:
    from evsys.backends.local.inference import LocalInferenceClient

    prompts = spec["prompts"] if batched else spec["prompts"][: spec["per_row"]]
    client = LocalInferenceClient(model=spec["model_name"], device="cpu", dtype="float32")
    client.generate(prompt=prompts[0], max_tokens=4)  # first-call costs out of the timing
    options = {"max_tokens": spec["max_tokens"], "temperature": 0.0}
    start = time.perf_counter()
    if batched:
        outputs = client.generate_batch(prompts=prompts, **options)
    else:
        outputs = [client.generate(prompt=p, **options) for p in prompts]
    return {"seconds": time.perf_counter() - start, "outputs": outputs}


def sft_threads(spec: dict[str, Any], sized: bool) -> dict[str, Any]:
    """evsys's SFT with torch's default threads, or with the threads sized to the arm's share."""
    import torch

    os.environ.pop("OMP_NUM_THREADS", None)
    if sized:
        os.environ["EVSYS_ARM_CPUS"] = str(spec["arm_cpus"])
    else:  # what torch starts with, before evsys sizes anything
        spec["overrides"] = [
            *spec["overrides"],
            f"backend.params.num_threads={torch.get_num_threads()}",
        ]
    result = sft_evsys(spec)
    result["threads"] = torch.get_num_threads()
    return result


SIDES = {
    "sft-evsys": sft_evsys,
    "sft-default-threads": lambda spec: sft_threads(spec, sized=False),
    "sft-sized-threads": lambda spec: sft_threads(spec, sized=True),
    "sft-plain": sft_plain,
    "eval-batched": lambda spec: generation(spec, batched=True),
    "eval-per-row": lambda spec: generation(spec, batched=False),
}


def child(side: str, spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = SIDES[side](spec)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(result_path).write_text(json.dumps(result))


# -- the parent: prepare the inputs, run the sides, compare -------------------------------------


def run_side(side: str, spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
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


def inputs(model: str, tmp: Path) -> tuple[Any, Path, list[Any]]:
    """The composed config, the training conversations as JSONL, the held-out prompts."""
    from evsys.backends.local.models import resolve_model_path
    from evsys.compose.compose import compose_and_validate
    from evsys.data.sources import apply_transforms, load_rows
    from evsys.registry import DATA_STORES
    from evsys.rows import assistant_text, prompt_messages
    from evsys.run.evaluation import eval_rows

    _, config = compose_and_validate([f"model={model}", "data=tool_selection"])
    resolve_model_path(config.model.name)  # build or convert it once, outside every timing
    store = DATA_STORES.build(config.data_store.kind, config.data_store.params)
    rows = apply_transforms(load_rows(config.data, store), config.data.transforms)
    # As evsys's SFT renders a row: its messages, or prompt + answer as two turns.
    conversations = [
        row.get("messages")
        or [*prompt_messages(row), {"role": "assistant", "content": assistant_text(row)}]
        for row in rows
    ]
    train = tmp / "train.jsonl"
    train.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    prompts = [prompt_messages(row) for row in eval_rows(config, store, rows)]
    return config, train, prompts


def tokens_per_s(marks: list[list[float]], warmup: int) -> tuple[float, float]:
    """Tokens/s over the steps after ``warmup``, and the tokens they trained on."""
    by_step = {int(step): (t, tokens) for step, t, tokens in marks}
    (t0, n0), (t1, n1) = by_step[warmup], by_step[max(by_step)]
    return (n1 - n0) / (t1 - t0), n1 - n0


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def sft_overrides(args: argparse.Namespace) -> list[str]:
    return [
        "backend=local",
        f"model={args.model}",
        "data=tool_selection",
        "eval=none",
        "metadata.success_metric=null",  # no eval: nothing to rank by
        f"algorithm.params.max_steps={args.steps}",
        "algorithm.params.learning_rate=1e-4",  # the plain script's (the default recipe: 2e-3)
        *(f"algorithm.params.{key}={value}" for key, value in SFT.items()),
        "backend.params.device=cpu",
        "backend.params.dtype=float32",
    ]


def bench_sft(args: argparse.Namespace, config: Any, train: Path, tmp: Path) -> None:
    from evsys.backends.local.models import resolve_model_path

    overrides = sft_overrides(args)
    spec = {
        "tmp": str(tmp),
        "overrides": overrides,
        "model_dir": str(resolve_model_path(config.model.name)),
        "train_rows": str(train),
        "seed": config.seed,
        "steps": args.steps,
    }
    # Alternate the sides (plain, evsys, evsys, plain, …) and keep each side's best run: a
    # process competing for the cores slows one run, not the side.
    runs: dict[str, list[dict[str, Any]]] = {"sft-plain": [], "sft-evsys": []}
    for i in range(args.repeats):
        for side in ("sft-plain", "sft-evsys")[:: 1 if i % 2 == 0 else -1]:
            result = run_side(side, spec, tmp)
            result["speed"], result["tokens"] = tokens_per_s(result["marks"], args.warmup)
            runs[side].append(result)
    plain, evsys = (max(runs[side], key=lambda r: r["speed"]) for side in runs)
    for best, results in ((plain, runs["sft-plain"]), (evsys, runs["sft-evsys"])):
        best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in results)  # of every run
    print(
        f"SFT, {config.model.name}: {args.steps} steps of {SFT['batch_size']} rows, "
        f"max_length {SFT['max_seq_length']}, LoRA r={SFT['lora_rank']}, float32 CPU; "
        f"tokens/s over steps {args.warmup + 1}..{args.steps}, best of {args.repeats} runs"
    )
    for side, results in runs.items():
        print(f"  {side} runs: " + ", ".join(f"{r['speed']:.0f}" for r in results) + " tokens/s")
    print(f"{'side':<32} {'tokens/s':>9} {'tokens':>7} {'peak RSS':>10}")
    for label, side in [("plain TRL script (baseline)", plain), ("evsys run_arm", evsys)]:
        print(
            f"{label:<32} {side['speed']:>9.0f} {side['tokens']:>7.0f} "
            f"{side['peak_rss_mib']:>7.0f} MiB"
        )
    if plain["tokens"] != evsys["tokens"]:
        print(
            f"note: the sides trained on different token counts ({evsys['tokens']} vs {plain['tokens']})"
        )
    ratio = evsys["speed"] / plain["speed"]
    print(f"ratio: {ratio:.2f}×   target ≥ 0.97×  {verdict(ratio >= 0.97)}")


def bench_contended(args: argparse.Namespace, config: Any, tmp: Path) -> None:
    from evsys.cpus import usable_cpus

    cpus = usable_cpus()
    share = max(1, cpus // (args.busy + 1))  # the arm and each busy process: one arm apiece
    spec = {"tmp": str(tmp), "overrides": sft_overrides(args), "arm_cpus": share}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    runs: dict[str, list[dict[str, Any]]] = {"sft-default-threads": [], "sft-sized-threads": []}
    try:
        for i in range(args.repeats):
            for side in list(runs)[:: 1 if i % 2 == 0 else -1]:
                result = run_side(side, spec, tmp)
                result["speed"], result["tokens"] = tokens_per_s(result["marks"], args.warmup)
                runs[side].append(result)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    default, sized = (max(runs[side], key=lambda r: r["speed"]) for side in runs)
    print(
        f"\ncontended SFT, {config.model.name}: {args.busy} busy processes on {cpus} CPUs, "
        f"{args.steps} steps; tokens/s over steps {args.warmup + 1}..{args.steps}, "
        f"best of {args.repeats} runs"
    )
    print(f"{'side':<40} {'threads':>7} {'tokens/s':>9}")
    for label, side in [("torch's default threads (baseline)", default), ("sized threads", sized)]:
        print(f"{label:<40} {side['threads']:>7} {side['speed']:>9.0f}")
    ratio = sized["speed"] / default["speed"]
    print(f"ratio: {ratio:.2f}×   target ≥ 1.5×  {verdict(ratio >= 1.5)}")


def bench_eval(args: argparse.Namespace, config: Any, prompts: list[Any], tmp: Path) -> None:
    prompts = [prompts[i % len(prompts)] for i in range(args.prompts)]  # repeat rows to N
    per_row_n = min(args.per_row, args.prompts)
    spec = {
        "model_name": config.model.name,
        "prompts": prompts,
        "per_row": per_row_n,
        "max_tokens": args.max_tokens,
    }
    per_row = run_side("eval-per-row", spec, tmp)
    batched = run_side("eval-batched", spec, tmp)
    differ = [
        i
        for i, (a, b) in enumerate(zip(batched["outputs"], per_row["outputs"], strict=False))
        if a != b
    ]
    print(
        f"\neval, {config.model.name}: greedy, {args.max_tokens} new tokens, held-out "
        f"tool_selection prompts, float32 CPU"
    )
    print(f"{'side':<32} {'prompts':>7} {'seconds':>8} {'s/prompt':>9} {'peak RSS':>10}")
    for label, n, side in [
        ("one generate per row (baseline)", per_row_n, per_row),
        ("generate_batch", args.prompts, batched),
    ]:
        seconds = side["seconds"]
        print(
            f"{label:<32} {n:>7} {seconds:>8.2f} {seconds / n:>9.3f} "
            f"{side['peak_rss_mib']:>7.0f} MiB"
        )
    speedup = (per_row["seconds"] / per_row_n) / (batched["seconds"] / args.prompts)
    print(f"speed-up per prompt: {speedup:.1f}×   target ≥ 4×  {verdict(speedup >= 4)}")
    print(f"outputs identical on the {per_row_n} prompts both generated: {not differ}")
    if differ:
        first = differ[0]
        sys.exit(
            f"batched and per-row outputs differ on {len(differ)} prompt(s), first #{first}: "
            f"{batched['outputs'][first]!r} vs {per_row['outputs'][first]!r}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="smollm2_135m")
    parser.add_argument("--steps", type=int, default=8, help="SFT steps per side")
    parser.add_argument("--repeats", type=int, default=2, help="SFT runs per side, best kept")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of tokens/s")
    parser.add_argument("--prompts", type=int, default=64, help="prompts generated in batch")
    parser.add_argument("--per-row", type=int, default=16, help="of them, generated one by one")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--busy", type=int, default=None, help="busy processes in the contended case (the CPUs)"
    )
    parser.add_argument(
        "--cases", default="sft,eval,contended", help="which of sft, eval, contended to run"
    )
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        child(args.side, args.spec, args.result)
        return
    if args.steps <= args.warmup:
        parser.error(f"--steps ({args.steps}) must be more than --warmup ({args.warmup})")

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        os.chdir(tmp)  # an empty project, for this process and every side: evsys's bundled config
        config, train, prompts = inputs(args.model, tmp)
        cases = set(args.cases.split(","))
        if "sft" in cases:
            bench_sft(args, config, train, tmp)
        if "eval" in cases:
            bench_eval(args, config, prompts, tmp)
        if "contended" in cases:
            if args.busy is None:
                from evsys.cpus import usable_cpus

                args.busy = usable_cpus()
            bench_contended(args, config, tmp)


if __name__ == "__main__":
    main()
