"""Distillation on the local backend: TRL's DistillationTrainer (on-policy GKD) trains a LoRA
adapter on the student to match a local teacher's token distributions."""

from __future__ import annotations

from typing import Any, ClassVar

from evsys.algorithms.distill import Distill
from evsys.backends.local.models import load_model
from evsys.backends.local.trainer import train_adapter
from evsys.backends.local.vision import refuse_images_in_recipe
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.rows import prompt_messages

# TRL's log keys → evsys metric names (the rest of TRL's logs are dropped).
_METRICS = {
    "loss": "train/loss",
    "learning_rate": "train/lr",
    "grad_norm": "train/grad_norm",
    "num_tokens": "train/num_tokens",
    "completions/mean_length": "train/completion_length",
}


@register_algorithm("distill", backend="local")
class LocalDistill:
    metrics: ClassVar[tuple[str, ...]] = ("train/runtime_s",)  # besides the recipe's

    def __init__(self, **params: Any):
        self.cfg = Distill.Config(**params)

    def train(self, ctx: RunContext) -> RunResult:
        from datasets import Dataset
        from transformers import set_seed
        from trl import DistillationConfig, DistillationTrainer

        cfg, handles = self.cfg, ctx.handles
        set_seed(ctx.seed)  # before the LoRA weights are drawn

        refuse_images_in_recipe(ctx.train_rows, "distill")
        # The teacher: frozen, in the student's precision and on its device.
        teacher, _ = load_model(
            cfg.teacher,
            device=handles["device"],
            dtype=handles["dtype"],
            adapter=cfg.teacher_checkpoint,
        )
        if cfg.teacher_checkpoint is not None:
            teacher = teacher.merge_and_unload()
        handles["tokenizer"].padding_side = "left"  # the trainer generates from left-padded prompts

        dataset = Dataset.from_list([{"prompt": prompt_messages(row)} for row in ctx.train_rows])
        args = ctx.backend.trainer_args(
            DistillationConfig,
            handles,
            output_dir=str(ctx.checkpoint_dir),
            seed=ctx.seed,
            data_seed=ctx.seed,
            learning_rate=cfg.learning_rate,
            max_steps=cfg.max_steps,
            per_device_train_batch_size=cfg.batch_size,
            max_completion_length=cfg.max_tokens,
            temperature=cfg.temperature,
            beta=cfg.beta,
            use_vllm=False,
            logging_steps=cfg.log_every,
            save_strategy="no",  # evsys saves adapters itself, as step_N/ and final/
        )
        return train_adapter(
            ctx,
            DistillationTrainer,
            cfg,
            label="local distill",
            metric_names=_METRICS,
            headline="loss",
            teacher_model=teacher,
            args=args,
            train_dataset=dataset,
        )
