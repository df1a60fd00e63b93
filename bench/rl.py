"""Local RL speed against plain TRL: evsys's ``algorithm=rl`` against a GRPOTrainer script.

    python bench/rl.py [--model tiny|smollm2_135m] [--steps 8] [--warmup 2] [--repeats 3]
                       [--batch-size 2] [--group-size 4] [--max-tokens 32] [--kl-coef 0]
                       [--threads N]

Both sides train a fresh LoRA adapter (r=8, alpha 16, every linear layer) with GRPO on the same
weights, ``data=arithmetic`` prompts in the same order, the same reward (exact_match through
evsys's verifier), group size, batch, max completion length, learning rate, seed and precision
(float32 on the CPU), with TRL's knobs spelled out as evsys sets them (no gradient
checkpointing, a log every step). evsys runs through the real lifecycle
(``compose_and_validate`` + ``run_arm``); the plain side is what a user writes with TRL directly.

Steps/s over the steps after ``--warmup``, from a callback every Trainer gets. The sides are
alternated (plain, evsys, evsys, plain, …), each run in a process of its own with
``OMP_NUM_THREADS=--threads``, and each side's median is compared. Target: ≥ 1.5×. Steps
per CPU second of the process are printed too: on a busy machine they vary less than the wall
clock.
``--model tiny`` (the default) keeps a full run within minutes on two busy cores;
``smollm2_135m`` is the real small model, minutes per run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODELS = {"tiny", "smollm2_135m"}
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"}
LEARNING_RATE = 1e-5


def step_clock() -> list[tuple[int, float, float]]:
    """(step, wall time, this process's CPU time) at every training log, from a callback
    appended to transformers' defaults, so both sides are timed by the same code without evsys
    knowing about it."""
    import transformers.trainer
    from transformers import TrainerCallback

    marks: list[tuple[int, float, float]] = []

    class StepClock(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if logs and "loss" in logs and "reward" in logs:
                marks.append((state.global_step, time.perf_counter(), time.process_time()))

    transformers.trainer.DEFAULT_CALLBACKS.append(StepClock())
    return marks


def overrides(spec: dict[str, Any]) -> list[str]:
    return [
        "algorithm=rl",
        "data=arithmetic",
        "backend=local",
        f"model={spec['model']}",
        "eval=none",
        "metadata.success_metric=null",  # no eval: nothing to rank by
        f"algorithm.params.max_steps={spec['steps']}",
        f"algorithm.params.batch_size={spec['batch_size']}",
        f"algorithm.params.group_size={spec['group_size']}",
        f"algorithm.params.max_tokens={spec['max_tokens']}",
        f"algorithm.params.kl_coef={spec['kl_coef']}",
        f"algorithm.params.learning_rate={LEARNING_RATE}",
        "backend.params.device=cpu",
        "backend.params.dtype=float32",
    ]


def rl_evsys(spec: dict[str, Any]) -> dict[str, Any]:
    from evsys.compose.compose import compose_and_validate
    from evsys.run.runner import run_arm

    marks = step_clock()
    args = overrides(spec)
    _, config = compose_and_validate(args)
    outcome = run_arm(config, Path(spec["tmp"]) / "evsys-run", overrides=args)
    if outcome.record["status"] != "completed":
        raise SystemExit(f"evsys run failed: {outcome.record['error']}")
    return {"marks": marks}


def rl_plain(spec: dict[str, Any]) -> dict[str, Any]:
    """What a user writes with TRL directly, with evsys's settings spelled out."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import GRPOConfig, GRPOTrainer

    from evsys.backends.local.rl import verifier_reward
    from evsys.registry import VERIFIERS

    marks = step_clock()
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    set_seed(spec["seed"])
    rows = [json.loads(line) for line in Path(spec["train_rows"]).read_text().splitlines()]
    dataset = Dataset.from_list(
        [{"prompt": row["prompt_messages"], "row_index": i} for i, row in enumerate(rows)]
    )
    reward = verifier_reward(VERIFIERS.build("exact_match", {}), rows, name="exact_match")
    args = GRPOConfig(
        output_dir=str(Path(spec["tmp"]) / "plain-run"),
        seed=spec["seed"],
        data_seed=spec["seed"],
        learning_rate=LEARNING_RATE,
        max_steps=spec["steps"],
        per_device_train_batch_size=spec["batch_size"] * spec["group_size"],
        num_generations=spec["group_size"],
        max_completion_length=spec["max_tokens"],
        temperature=1.0,
        beta=spec["kl_coef"],
        loss_type="dapo",
        epsilon=1e9,  # evsys's default loss, importance_sampling, does not clip
        use_vllm=False,
        logging_steps=1,
        save_strategy="no",
        bf16=False,
        fp16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        peft_config=LoraConfig(**LORA, task_type="CAUSAL_LM"),
    )
    trainer.train()
    return {"marks": marks}


SIDES = {"rl-plain": rl_plain, "rl-evsys": rl_evsys}


def child(side: str, spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = SIDES[side](spec)
    Path(result_path).write_text(json.dumps(result))


# -- the parent: prepare the inputs, run the sides, compare -------------------------------------


def run_side(side: str, spec: dict[str, Any], tmp: Path, threads: int) -> dict[str, Any]:
    spec_path, result_path = tmp / f"{side}.spec.json", tmp / f"{side}.result.json"
    spec_path.write_text(json.dumps(spec))
    command = [sys.executable, str(Path(__file__).resolve()), "--side", side]
    command += ["--spec", str(spec_path), "--result", str(result_path)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(
            f"{side} failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return json.loads(result_path.read_text())


def inputs(model: str, tmp: Path) -> tuple[Any, Path]:
    """The composed config and the training rows (with their prompt messages) as JSONL."""
    from evsys.backends.local.models import resolve_model_path
    from evsys.compose.compose import compose_and_validate
    from evsys.data.sources import apply_transforms, load_rows
    from evsys.registry import DATA_STORES
    from evsys.rows import prompt_messages

    _, config = compose_and_validate([f"model={model}", "data=arithmetic", "algorithm=rl"])
    resolve_model_path(config.model.name)  # build or convert it once, outside every timing
    store = DATA_STORES.build(config.data_store.kind, config.data_store.params)
    rows = apply_transforms(load_rows(config.data, store), config.data.transforms)
    train = tmp / "train.jsonl"
    train.write_text(
        "".join(json.dumps({**row, "prompt_messages": prompt_messages(row)}) + "\n" for row in rows)
    )
    return config, train


def step_rates(marks: list[list[float]], warmup: int) -> tuple[float, float]:
    """Steps per wall-clock second and per CPU second over the steps after ``warmup``."""
    by_step = {int(step): (wall, cpu) for step, wall, cpu in marks}
    last = max(by_step)
    (wall0, cpu0), (wall1, cpu1) = by_step[warmup], by_step[last]
    return (last - warmup) / (wall1 - wall0), (last - warmup) / (cpu1 - cpu0)


def main() -> None:
    from evsys.cpus import usable_cpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--steps", type=int, default=8, help="GRPO steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of steps/s")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, median kept")
    parser.add_argument("--batch-size", type=int, default=2, help="prompts per step")
    parser.add_argument("--group-size", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-tokens", type=int, default=32, help="max completion length")
    parser.add_argument("--kl-coef", type=float, default=0.0, help="TRL's beta")
    parser.add_argument("--threads", type=int, default=usable_cpus(), help="torch threads")
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
        config, train = inputs(args.model, tmp)
        from evsys.backends.local.models import resolve_model_path

        spec = {
            "tmp": str(tmp),
            "model": args.model,
            "model_dir": str(resolve_model_path(config.model.name)),
            "train_rows": str(train),
            "seed": config.seed,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "group_size": args.group_size,
            "max_tokens": args.max_tokens,
            "kl_coef": args.kl_coef,
        }
        speeds: dict[str, list[float]] = {"rl-plain": [], "rl-evsys": []}
        cpu: dict[str, list[float]] = {"rl-plain": [], "rl-evsys": []}
        for i in range(args.repeats):
            for side in list(speeds)[:: 1 if i % 2 == 0 else -1]:
                result = run_side(side, spec, tmp, args.threads)
                wall, per_cpu_s = step_rates(result["marks"], args.warmup)
                speeds[side].append(wall)
                cpu[side].append(per_cpu_s)
                print(f"  run {i + 1} {side}: {wall:.3f} steps/s", flush=True)
    plain, evsys = (statistics.median(speeds[side]) for side in ("rl-plain", "rl-evsys"))
    cpu_plain, cpu_evsys = (statistics.median(cpu[side]) for side in ("rl-plain", "rl-evsys"))
    print(
        f"RL (GRPO), {config.model.name}: {args.batch_size} prompts × {args.group_size} "
        f"completions of ≤ {args.max_tokens} tokens, LoRA r={LORA['r']}, kl_coef "
        f"{args.kl_coef}, float32 CPU, {args.threads} thread(s); steps/s over steps "
        f"{args.warmup + 1}..{args.steps}, median of {args.repeats} runs per side, alternated"
    )
    print(f"{'side':<32} {'steps/s':>8} {'steps/CPU-s':>12}   runs (steps/s)")
    for label, side, median, median_cpu in [
        ("plain GRPOTrainer (baseline)", "rl-plain", plain, cpu_plain),
        ("evsys run_arm", "rl-evsys", evsys, cpu_evsys),
    ]:
        runs = ", ".join(f"{s:.3f}" for s in speeds[side])
        print(f"{label:<32} {median:>8.3f} {median_cpu:>12.3f}   {runs}")
    # Steps per CPU second: what the machine's other load changes least (a busy machine
    # stretches the wall clock of both sides, unevenly from run to run).
    print(f"per CPU second: {cpu_evsys / cpu_plain:.2f}×")
    ratio = evsys / plain
    print(f"ratio: {ratio:.2f}×   target ≥ 1.5×  {'ok' if ratio >= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
