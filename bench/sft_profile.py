"""Where a local SFT step's time goes, for TRL's padded layout and evsys's (bench/sft.py's profile side).

The same batches of TRL-prepared rows (an SFTTrainer builds them: template, assistant mask,
truncation) go through each layout phase by phase: data (the collator), forward (the backbone),
LM head + loss (forward and backward, from the backbone's output), backward (the backbone),
optimizer (AdamW on the LoRA weights). FLOPs count the linear layers (2 per weight per token
forward, 2 backward: the frozen base only passes activation gradients back) and the LM head at
the positions each layout projects; attention scores are left out. This machine's matmul FLOP/s
is measured in the same process.
"""

from __future__ import annotations

import statistics
import time
from typing import Any


def matmul_flops(device: str, dtype: Any) -> float:
    import torch

    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    times = []
    for _ in range(6):
        sync(device)
        start = time.perf_counter()
        a @ a
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / statistics.median(times[1:])


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def profile(spec: dict[str, Any]) -> dict[str, Any]:
    import json
    from pathlib import Path

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from evsys.backends.local.models import load_model
    from evsys.backends.local.row_attention import row_attention
    from evsys.backends.local.sft_speed import FlatCollator, SFTSpeed

    device, dtype = spec["device"], getattr(torch, spec["dtype"])
    torch.set_num_threads(spec["threads"])
    model, tokenizer = load_model(
        spec["model_dir"], device=device, dtype=spec["dtype"], trainable=True
    )
    rows = [json.loads(line) for line in Path(spec["rows"]).read_text().splitlines()]
    args = SFTConfig(
        output_dir=str(Path(spec["tmp"]) / "profile-run"),
        max_length=spec["max_length"],
        assistant_only_loss=True,
        use_cpu=device == "cpu",
        bf16=spec["dtype"] == "bfloat16",
        report_to="none",
    )
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
    )
    peft_model, dataset = trainer.model, trainer.train_dataset
    size = spec["batch_size"]
    batches = [
        [dataset[i] for i in range(start, start + size)]
        for start in range(0, size * spec["profile_batches"], size)
    ]
    causal_lm = peft_model.get_base_model()
    body = sum(
        m.weight.numel()
        for name, m in causal_lm.model.named_modules()
        if isinstance(m, torch.nn.Linear)
    )
    head = causal_lm.lm_head.weight.numel()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad])
    applied = SFTSpeed().applied(device)  # evsys's defaults here
    layouts = {
        "TRL padded (plain)": trainer.data_collator,
        "evsys": FlatCollator(tokenizer.pad_token_id or 0, **_collator_switches(applied)),
    }
    peak = matmul_flops(device, dtype)
    lines = [
        f"step profile on {spec['profile_batches']} batches (median per step), "
        f"matmul peak here {peak / 1e9:.1f} GFLOP/s ({spec['dtype']} {device})"
    ]
    lines.append(
        f"  {'layout':<20} {'data':>6} {'fwd':>6} {'head+loss':>9} {'bwd':>6} {'optim':>6} "
        f"{'step s':>7} {'tokens in':>9} {'GFLOP':>6} {'GFLOP/s':>7} {'of peak':>7}"
    )
    work = {}
    for label, collate in layouts.items():
        phases: list[dict[str, float]] = []
        by_row = label == "evsys" and applied["row_attention"]
        with row_attention(causal_lm, enabled=by_row):
            for rows_ in batches * 2:  # the first pass warms up
                phases.append(_step(peft_model, causal_lm, collate, rows_, optimizer, device))
        timed = phases[len(batches) :]
        median = {k: statistics.median(p[k] for p in timed) for k in timed[0]}
        step = sum(median[k] for k in ("data", "fwd", "head", "bwd", "optim"))
        flops = 4 * body * median["tokens"] + 6 * head * median["projected"]
        work[label] = flops
        lines.append(
            f"  {label:<20} {median['data']:>6.3f} {median['fwd']:>6.3f} {median['head']:>9.3f} "
            f"{median['bwd']:>6.3f} {median['optim']:>6.3f} {step:>7.3f} "
            f"{median['tokens']:>9.0f} {flops / 1e9:>6.1f} {flops / step / 1e9:>7.1f} "
            f"{flops / step / peak:>7.1%}"
        )
    plain, evsys = work.values()
    lines.append(
        f"  FLOPs a step, plain / evsys: {plain / evsys:.2f}× (the speed-up the layout gives at "
        "equal FLOP/s; more needs a higher share of the peak than the plain script's)"
    )
    if device == "cuda":
        lines.append(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    return {"report": "\n".join(lines)}


def _collator_switches(applied: dict[str, bool]) -> dict[str, bool]:
    return {  # the collator's switches (row attention is the model's)
        "padding_free": applied["padding_free"],
        "shared_prefix": applied["shared_prefix"],
        "scored_only": applied["scored_logits_only"],
    }


def _step(
    peft_model: Any, causal_lm: Any, collate: Any, rows: list[Any], optimizer: Any, device: str
) -> dict[str, float]:
    import torch

    from evsys.backends.local.sft_speed import KEEP, PICK_COL, PICK_ROW, TARGETS, model_inputs

    marks = [time.perf_counter()]

    def mark() -> None:
        sync(device)
        marks.append(time.perf_counter())

    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in collate(rows).items()}
    mark()
    hidden = causal_lm.model(**model_inputs(causal_lm, batch)).last_hidden_state
    mark()
    leaf = hidden.detach().requires_grad_()
    if KEEP in batch:  # evsys: the head at the kept positions, cross-entropy of the picked ones
        logits = causal_lm.lm_head(leaf[:, batch[KEEP]])[batch[PICK_ROW], batch[PICK_COL]]
        targets = batch[TARGETS][0]
        loss = torch.nn.functional.cross_entropy(logits.float(), targets)
        projected = batch[KEEP].numel() * batch["input_ids"].shape[0]
    else:  # TRL on a device without Triton: its chunked head at every position
        from trl.kernels import ChunkedLogProbFunction

        labels = batch["labels"][:, 1:]
        flat = leaf[:, :-1].reshape(-1, leaf.size(-1))
        logp, *_ = ChunkedLogProbFunction.apply(
            flat,
            causal_lm.lm_head.weight,
            None,
            labels.clamp(min=0).reshape(-1),
            1.0,
            32768,
            None,
            1.0,
            ("log_probs", "entropy", "is_top1"),
        )
        valid = (labels != -100).reshape(-1)
        loss = -(logp * valid).sum() / valid.sum()
        projected = flat.shape[0]
    loss.backward()
    mark()
    hidden.backward(leaf.grad)
    mark()
    optimizer.step()
    optimizer.zero_grad()
    peft_model.zero_grad()
    mark()
    names = ("data", "fwd", "head", "bwd", "optim")
    times = {name: marks[i + 1] - marks[i] for i, name in enumerate(names)}
    return times | {"tokens": float(batch["input_ids"].numel()), "projected": float(projected)}
