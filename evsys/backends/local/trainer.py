"""What the local recipes share around a TRL trainer.

A fresh LoRA adapter (unless the model already carries one), an evsys callback that logs every
step to the run's log store, moves the progress bar, saves adapters every ``save_every`` steps,
scores the ``val`` benchmarks on the live model when they are due and ends each step for the
run's own callbacks (TRL's ``control.should_training_stop`` when one asks to stop), a quiet run,
and the final adapter saved where eval and the next phase load it.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

from evsys.backends.local.inference import LocalInferenceClient
from evsys.backends.local.models import quiet_libraries
from evsys.protocols import RunContext, RunResult
from evsys.training import is_save_step, progress_bar


def train_adapter(
    ctx: RunContext,
    trainer_cls: type,
    cfg: Any,
    *,
    label: str,
    metric_names: dict[str, str],
    headline: str,
    **trainer_kwargs: Any,
) -> RunResult:
    """Train with TRL's ``trainer_cls``; the result names the final adapter.

    ``cfg`` is a recipe Config with the LoRA fields and ``save_every``; ``metric_names`` maps
    TRL's log keys to evsys metric names; ``headline`` is the TRL key shown on the progress bar
    (a log without it, such as the end-of-training summary, is not a step), and its last value
    is the run's ``train/final_<name>`` (``loss`` → ``train/final_loss``).
    """
    from peft import LoraConfig, PeftModel
    from transformers import PrinterCallback

    model = ctx.handles["model"]
    peft_config = None
    if not isinstance(model, PeftModel):  # model.load_checkpoint_path already put one on
        peft_config = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.target_modules,
            task_type="CAUSAL_LM",
        )
    with ExitStack() as stack:
        stack.enter_context(quiet_libraries())
        callback = _evsys_callback(ctx, label, cfg.save_every, metric_names, headline, stack)
        trainer = trainer_cls(
            model=model,
            processing_class=ctx.handles["tokenizer"],
            peft_config=peft_config,
            callbacks=[callback],
            **trainer_kwargs,
        )
        trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
        output = trainer.train()

    final = ctx.checkpoint_dir / "final"
    if trainer.is_world_process_zero():  # data-parallel ranks hold the same weights
        trainer.model.save_pretrained(final)
        ctx.log_store.log_artifact("final_checkpoint", str(final))
    metrics = {
        "train/steps": float(trainer.state.global_step),
        "train/runtime_s": output.metrics.get("train_runtime", 0.0),
    }
    last = metric_names[headline]
    if last in callback.last:
        metrics[last.replace("train/", "train/final_", 1)] = callback.last[last]
    return RunResult(
        run_id=ctx.run_id,
        status="completed",
        metrics=metrics,
        artifacts={"final_checkpoint": str(final)},
    )


def _evsys_callback(
    ctx: RunContext,
    label: str,
    save_every: int | None,
    metric_names: dict[str, str],
    headline: str,
    stack: ExitStack,
) -> Any:
    from transformers import TrainerCallback

    class EvsysCallback(TrainerCallback):
        def __init__(self) -> None:
            self.advance: Any = None
            self.last: dict[str, float] = {}
            self.last_log = (time.perf_counter(), 0.0)  # (time, num_tokens) at the last log

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if state.is_world_process_zero:  # one bar per run, not one per data-parallel rank
                self.advance = stack.enter_context(progress_bar(label, state.max_steps))
            else:
                self.advance = lambda *_, **__: None
            self.last_log = (time.perf_counter(), 0.0)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            model, step = kwargs["model"], state.global_step
            if is_save_step(step, save_every) and state.is_world_process_zero:
                path = ctx.checkpoint_dir / f"step_{step}"
                model.save_pretrained(path)
                ctx.log_store.log_artifact(f"checkpoint_step_{step}", str(path))
            # A step TRL logs ends once its log is in (on_log comes right after); others end here.
            logged = control.should_log
            ctx.validate(
                step,
                lambda: LocalInferenceClient.live(model, ctx.handles["tokenizer"]),
                end_step=not logged,
            )
            if not logged:
                _stop_if_asked(ctx, control)
            self.advance()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if not logs or headline not in logs:
                return
            metrics = {name: float(logs[key]) for key, name in metric_names.items() if key in logs}
            now, tokens = time.perf_counter(), float(logs.get("num_tokens", 0.0))
            then, tokens_then = self.last_log
            if tokens:
                metrics["train/tokens_per_s"] = (tokens - tokens_then) / max(now - then, 1e-9)
            self.last_log = (now, tokens)
            self.last = metrics
            ctx.log_store.log_metrics(metrics, step=state.global_step)
            ctx.end_step(state.global_step)
            _stop_if_asked(ctx, control)
            self.advance(0, **{headline: float(logs[headline])})

    return EvsysCallback()


def _stop_if_asked(ctx: RunContext, control: Any) -> None:
    """Stop TRL's loop after this step when a callback asked. Data-parallel ranks stop together:
    rank 0, which alone runs the callbacks, decides for all of them."""
    import torch.distributed as dist

    stop = [ctx.should_stop]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(stop, src=0)
    if stop[0]:
        control.should_training_stop = True
