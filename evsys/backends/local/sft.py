"""SFT on the local backend: TRL's SFTTrainer trains a PEFT LoRA adapter on chat rows."""

from __future__ import annotations

import re
import time
from contextlib import ExitStack
from typing import Any

from evsys.algorithms.sft import SFT
from evsys.backends.local.models import quiet_libraries
from evsys.errors import ConfigError
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.rows import assistant_text, prompt_messages
from evsys.training import is_save_step, progress_bar

# `{% generation %}` (any whitespace control): TRL masks the tokens inside it for assistant_only_loss.
_GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")

# TRL's log keys → evsys metric names (the rest of TRL's logs are dropped).
_METRICS = {
    "loss": "train/loss",
    "learning_rate": "train/lr",
    "grad_norm": "train/grad_norm",
    "mean_token_accuracy": "train/token_accuracy",
    "num_tokens": "train/num_tokens",
}


@register_algorithm("sft", backend="local")
class LocalSFT:
    def __init__(self, **params: Any):
        self.cfg = SFT.Config(**params)

    def train(self, ctx: RunContext) -> RunResult:
        from datasets import Dataset
        from peft import LoraConfig, PeftModel
        from transformers import PrinterCallback, set_seed
        from trl import SFTConfig, SFTTrainer

        cfg, handles = self.cfg, ctx.handles
        model, tokenizer = handles["model"], handles["tokenizer"]

        # Check: the loss mask needs generation markers (TRL's own error says less).
        if cfg.assistant_only_loss and not _GENERATION_BLOCK.search(tokenizer.chat_template or ""):
            raise ConfigError(
                "algorithm.params.assistant_only_loss needs a chat template that marks the "
                "assistant turns with {% generation %} … {% endgeneration %}, and the "
                f"tokenizer of '{ctx.config.model.name}' has none; set "
                "algorithm.params.assistant_only_loss=false, or add the markers to its "
                "chat_template.jinja"
            )
        set_seed(ctx.seed)  # before the LoRA weights are drawn

        # Data: one conversation per row; TRL applies the chat template and the assistant mask.
        dataset = Dataset.from_list([{"messages": _conversation(row)} for row in ctx.train_rows])

        # Trainer config: the recipe's fields, the engine's precision, the user's extra TRL args.
        args = ctx.backend.trainer_args(
            SFTConfig,
            handles,
            output_dir=str(ctx.checkpoint_dir),
            seed=ctx.seed,
            data_seed=ctx.seed,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type=cfg.lr_schedule,
            warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
            weight_decay=cfg.weight_decay,
            per_device_train_batch_size=cfg.batch_size,
            num_train_epochs=cfg.num_epochs,
            max_steps=cfg.max_steps or -1,
            max_length=cfg.max_seq_length,
            packing=cfg.packing,
            assistant_only_loss=cfg.assistant_only_loss,
            logging_steps=cfg.log_every,
            save_strategy="no",  # evsys saves adapters itself, as step_N/ and final/
        )

        # LoRA: a fresh adapter, unless model.load_checkpoint_path already put one on the model.
        peft_config = None
        if not isinstance(model, PeftModel):
            peft_config = LoraConfig(
                r=cfg.lora_rank,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=cfg.target_modules,
                task_type="CAUSAL_LM",
            )

        with ExitStack() as stack:
            stack.enter_context(quiet_libraries())
            callback = _evsys_callback(ctx, cfg.save_every, stack)
            trainer = SFTTrainer(
                model=model,
                args=args,
                train_dataset=dataset,
                processing_class=tokenizer,
                peft_config=peft_config,
                callbacks=[callback],
            )
            trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
            output = trainer.train()

        # Final adapter: what eval and the next phase load.
        final = ctx.checkpoint_dir / "final"
        trainer.model.save_pretrained(final)
        ctx.log_store.log_artifact("final_checkpoint", str(final))
        metrics = {"train/steps": float(trainer.state.global_step)}
        metrics["train/runtime_s"] = output.metrics.get("train_runtime", 0.0)
        if callback.last_loss is not None:
            metrics["train/final_loss"] = callback.last_loss
        return RunResult(
            run_id=ctx.run_id,
            status="completed",
            metrics=metrics,
            artifacts={"final_checkpoint": str(final)},
        )


def _conversation(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's messages; a prompt/answer row becomes a user turn and an assistant turn."""
    if row.get("messages"):
        return row["messages"]
    return [*prompt_messages(row), {"role": "assistant", "content": assistant_text(row)}]


def _evsys_callback(ctx: RunContext, save_every: int | None, stack: ExitStack) -> Any:
    """A TrainerCallback: per-step metrics to the log store, the progress bar, adapter saves."""
    from transformers import TrainerCallback

    class EvsysCallback(TrainerCallback):
        def __init__(self) -> None:
            self.advance: Any = None
            self.last_loss: float | None = None
            self.last_log = (time.perf_counter(), 0.0)  # (time, num_tokens) at the last log

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.advance = stack.enter_context(progress_bar("local sft", state.max_steps))
            self.last_log = (time.perf_counter(), 0.0)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if is_save_step(state.global_step, save_every):
                path = ctx.checkpoint_dir / f"step_{state.global_step}"
                kwargs["model"].save_pretrained(path)
                ctx.log_store.log_artifact(f"checkpoint_step_{state.global_step}", str(path))
            self.advance()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if not logs or "loss" not in logs:  # the end-of-training summary has no loss
                return
            metrics = {name: float(logs[key]) for key, name in _METRICS.items() if key in logs}
            now, tokens = time.perf_counter(), float(logs.get("num_tokens", 0.0))
            then, tokens_then = self.last_log
            if tokens:
                metrics["train/tokens_per_s"] = (tokens - tokens_then) / max(now - then, 1e-9)
            self.last_log = (now, tokens)
            self.last_loss = metrics["train/loss"]
            ctx.log_store.log_metrics(metrics, step=state.global_step)
            self.advance(0, loss=self.last_loss)

    return EvsysCallback()
