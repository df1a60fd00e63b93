"""Local SFT and eval on one GPU: bf16 tokens/s and MFU against plain TRL, batched eval against HF.

    python bench/gpu.py [--model smollm2_135m] [--steps 12] [--repeats 2] [--prompts 256]
    python bench/gpu.py --dry      # no GPU: the same code on the CPU, tiny model, few steps

1. SFT: bench/sft.py's comparison on ``cuda`` in bfloat16 (evsys's local SFT with its CUDA
   defaults against a plain TRL script on the same GPU, bundled and varied rows, sides
   alternated, medians), with its step profile: FLOP/s against the GPU's own bf16 matmul FLOP/s
   measured in the same run (MFU against what this card reaches), and peak GPU memory.
2. Eval: ``LocalInferenceClient.generate_batch`` against HF ``generate`` on the same batches
   (left-padded, greedy, the client's batch size), the same prompts; outputs compared.

Without a CUDA device it says so and exits 2, unless ``--dry``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def eval_side(
    model_name: str, prompts: list[Any], device: str, dtype: str, max_tokens: int
) -> None:
    """evsys's batched client, then HF generate on the same batches; times and agreement."""
    import torch

    from evsys.backends.local.inference import LocalInferenceClient

    client = LocalInferenceClient(model=model_name, device=device, dtype=dtype)
    client.generate(prompt=prompts[0], max_tokens=4)  # first-call costs out of the timing
    start = time.perf_counter()
    ours = client.generate_batch(prompts=prompts, max_tokens=max_tokens, temperature=0.0)
    evsys_s = time.perf_counter() - start

    tokenizer, model = client.tokenizer, client.model
    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    size = client.cfg.batch_size
    theirs: list[str] = []
    start = time.perf_counter()
    for i in range(0, len(texts), size):
        batch = tokenizer(texts[i : i + size], return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_tokens, do_sample=False)
        new = out[:, batch["input_ids"].shape[1] :]
        theirs += tokenizer.batch_decode(new, skip_special_tokens=True)
    hf_s = time.perf_counter() - start
    same = sum(a.strip() == b.strip() for a, b in zip(ours, theirs, strict=True))
    print(
        f"\neval, {model_name}: {len(prompts)} prompts, greedy, {max_tokens} new tokens, "
        f"{dtype} {device}, batches of {size}"
    )
    print(f"  HF generate (baseline)   {hf_s:8.2f} s  {len(prompts) / hf_s:8.1f} prompts/s")
    print(f"  evsys generate_batch     {evsys_s:8.2f} s  {len(prompts) / evsys_s:8.1f} prompts/s")
    print(f"  speed-up {hf_s / evsys_s:.2f}×; same output on {same}/{len(prompts)} prompts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2_135m", "tiny"], default="smollm2_135m")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--dry", action="store_true", help="no GPU: run on the CPU, briefly")
    args = parser.parse_args()

    import torch

    if args.dry:
        device, dtype, model = "cpu", "float32", "tiny"
        steps, repeats, prompts, profile = "3", "1", 8, "1"
        print("dry run: CPU, float32, the tiny model; the figures say nothing about a GPU")
    elif not torch.cuda.is_available():
        print(
            "no CUDA device: torch sees no GPU here (torch.cuda.is_available() is False); "
            "run on a GPU machine, or pass --dry to exercise the script on the CPU",
            file=sys.stderr,
        )
        sys.exit(2)
    else:
        device, dtype, model = "cuda", "bfloat16", args.model
        steps, repeats, prompts, profile = str(args.steps), str(args.repeats), args.prompts, "3"
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")

    command = [sys.executable, str(HERE / "sft.py"), "--device", device, "--dtype", dtype]
    command += ["--model", model, "--steps", steps, "--repeats", repeats]
    command += ["--warmup", "2" if int(steps) > 3 else "1", "--profile-batches", profile]
    if subprocess.run(command).returncode != 0:
        sys.exit("the SFT comparison failed (its output is above)")

    sys.path.insert(0, str(HERE))
    from local import inputs

    with tempfile.TemporaryDirectory() as name:
        import os

        os.chdir(name)  # an empty project: evsys's bundled config
        config, _, held_out = inputs(model, Path(name))
        rows = [held_out[i % len(held_out)] for i in range(prompts)]
        eval_side(config.model.name, rows, device, dtype, args.max_tokens)


if __name__ == "__main__":
    main()
