"""SFT on the tinker backend: cross-entropy on the assistant tokens, one Tinker step per batch.

Each step submits ``forward_backward`` and ``optim_step`` together and only then reads the
previous step's result, so the service always has the next step queued while the client logs.
A recipe with its own ``build_batch`` and ``loss`` trains on its examples through
``forward_backward_custom``: the service computes the logprobs, the loss and its gradient run
here, and the service back-propagates that gradient.
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from evsys.algorithms.sft import SFT, Example
from evsys.backends.tinker.rendering import conversation, datum, refuse_images
from evsys.backends.tinker.training import (
    Checkpoints,
    nll_per_token,
    validate_live,
    validation_due,
)
from evsys.errors import ConfigError, DataError, MissingDependencyError
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.training import is_save_step, iterate_batches, progress_bar, scheduled_lr, total_steps


@dataclass
class _Step:
    """A submitted step whose results the client has not read yet."""

    number: int
    forward_backward: Any
    optim: Any
    batch: list[tuple[Any, int]]
    lr: float
    submitted_at: float


@register_algorithm("sft", backend="tinker")
class TinkerSFT:
    recipe_class: ClassVar[type[SFT]] = SFT  # or a subclass with its own build_batch and loss

    def __init__(self, **params: Any):
        self.recipe = self.recipe_class(**params)
        self.cfg = self.recipe.cfg
        self._examples: dict[int, Example] = {}  # id(datum) → the recipe's example
        self._losses: dict[int, float] = {}  # step → the recipe's loss, once computed

    def train(self, ctx: RunContext) -> RunResult:
        from tinker import types

        cfg, backend = self.cfg, ctx.backend
        if cfg.packing:
            raise ConfigError(
                "algorithm.params.packing=true: the tinker backend sends each row as its own "
                "sequence; set algorithm.params.packing=false"
            )

        # Data: every row rendered with the model's chat template, weights on assistant tokens.
        tokenizer = ctx.handles["tokenizer"]
        for index, row in enumerate(ctx.train_rows):  # before any call to the service
            refuse_images(conversation(row), f"train row {index}")
        if self.recipe.custom_training():
            if importlib.util.find_spec("torch") is None:
                raise MissingDependencyError(
                    "torch", "local", f"algorithm '{self.recipe.name}' (a loss of its own)"
                )
            data = [self._datum(e) for e in self.recipe.build_batch(ctx.train_rows, tokenizer)]
        else:
            data = [
                d
                for row in ctx.train_rows
                if (
                    d := datum(
                        tokenizer,
                        row,
                        max_length=cfg.max_seq_length,
                        assistant_only=cfg.assistant_only_loss,
                    )
                )
            ]
        if not data:
            raise DataError(
                f"no training row keeps an assistant token within max_seq_length="
                f"{cfg.max_seq_length}; raise algorithm.params.max_seq_length"
            )
        steps = total_steps(len(data), cfg.batch_size, cfg.num_epochs, cfg.max_steps)

        # Client: the loaded checkpoint's, or a new LoRA of the recipe's rank.
        client = backend.training_client(ctx.handles, cfg, ctx.seed)
        checkpoints = Checkpoints(ctx, client)
        last: dict[str, float] = {}
        pending: _Step | None = None

        with progress_bar("tinker sft", steps) as advance:
            batches = iterate_batches(data, cfg.batch_size, steps, ctx.seed)
            for number, batch in enumerate(batches, start=1):
                if pending is not None and validation_due(ctx, pending.number):
                    # Validate the weights of that step, before the next one changes them.
                    last = self._finish(ctx, client, pending, steps, checkpoints, advance)
                    pending = None
                if ctx.should_stop:  # a callback asked, at a step already read
                    break
                lr = scheduled_lr(
                    cfg.learning_rate,
                    cfg.lr_schedule,
                    number,
                    steps,
                    cfg.warmup_ratio,
                    before_step=True,  # the rate this step trains with
                )
                with checkpoints.errors(f"submitting step {number}"):
                    step = _Step(
                        number,
                        self._forward_backward(client, number, [d for d, _ in batch]),
                        client.optim_step(
                            types.AdamParams(learning_rate=lr, weight_decay=cfg.weight_decay)
                        ),
                        batch,
                        lr,
                        time.perf_counter(),
                    )
                if is_save_step(number, cfg.save_every):
                    checkpoints.submit_save(number)
                if pending is not None:  # read the previous step while this one runs
                    last = self._finish(ctx, client, pending, steps, checkpoints, advance)
                pending = step
            if pending is not None:  # already submitted: it trains even after a stop
                last = self._finish(ctx, client, pending, steps, checkpoints, advance)

        final = checkpoints.save_final()
        return RunResult(
            run_id=ctx.run_id,
            status="completed",
            metrics={
                "train/final_loss": last.get("train/loss", math.nan),
                "train/steps": last.get("train/step", 0.0),
            },
            artifacts=final,
        )

    def _datum(self, example: Example) -> tuple[Any, int]:
        """The recipe's example as a Tinker datum, and how many of its targets are weighted."""
        import numpy as np
        from tinker import types

        d = types.Datum(
            model_input=types.ModelInput.from_ints(example.input_tokens),
            loss_fn_inputs={
                "target_tokens": np.asarray(example.target_tokens, dtype=np.int64),
                "weights": np.asarray(example.weights, dtype=np.float32),
            },
        )
        self._examples[id(d)] = example
        return d, sum(1 for w in example.weights if w)

    def _forward_backward(self, client: Any, number: int, data: list[Any]) -> Any:
        """Step ``number``'s forward and backward: cross-entropy, or the recipe's own loss."""
        if not self._examples:
            return client.forward_backward(data, "cross_entropy")

        def loss(data: list[Any], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
            value = self.recipe.loss([self._examples[id(d)] for d in data], logprobs)
            self._losses[number] = float(value.detach())
            return value, {}

        return client.forward_backward_custom(data, loss)

    def _finish(
        self,
        ctx: RunContext,
        client: Any,
        step: _Step,
        steps: int,
        checkpoints: Checkpoints,
        advance: Any,
    ) -> dict[str, float]:
        """Read a step's results, log its metrics and the checkpoints saved after it, and end
        the step (validation when due: the caller reads a due step before the next is sent)."""
        backend = ctx.backend
        with checkpoints.errors(f"training step {step.number}"):
            output = backend.wait(step.forward_backward, f"the result of step {step.number}")
            backend.wait(step.optim, f"the optimizer step {step.number}")
        checkpoints.collect(step.number)
        tokens = sum(n for _, n in step.batch)
        metrics = {
            "train/loss": self._losses.pop(step.number)
            if self._examples
            else nll_per_token(output, [d for d, _ in step.batch]),
            "train/lr": step.lr,
            "train/num_tokens": float(tokens),
            "train/tokens_per_s": tokens / max(time.perf_counter() - step.submitted_at, 1e-9),
        }
        if step.number % self.cfg.log_every == 0 or step.number == steps:
            ctx.log_store.log_metrics(metrics, step=step.number)
        validate_live(ctx, client, step.number)
        advance(loss=metrics["train/loss"])
        return metrics | {"train/step": float(step.number)}
