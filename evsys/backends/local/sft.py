"""SFT on the local backend: TRL's SFTTrainer trains a PEFT LoRA adapter on chat rows."""

from __future__ import annotations

from typing import Any, ClassVar

from evsys.algorithms.sft import SFT
from evsys.backends.local.custom_loss import ExampleCollator, example_dataset, recipe_loss_trainer
from evsys.backends.local.row_attention import row_attention
from evsys.backends.local.sft_speed import FlatCollator, flat_loss_trainer
from evsys.backends.local.trainer import train_adapter
from evsys.backends.local.vision import (
    is_processor,
    refuse_images_in_recipe,
    refuse_images_without_processor,
    training_example,
)
from evsys.errors import ConfigError, DataError
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.rows import assistant_text, prompt_messages

# TRL's log keys → evsys metric names (the rest of TRL's logs are dropped).
_METRICS = {
    "loss": "train/loss",
    "learning_rate": "train/lr",
    "grad_norm": "train/grad_norm",
    "mean_token_accuracy": "train/token_accuracy",
    "num_tokens": "train/num_tokens",
}
_WITH_WARMUP = {"constant": "constant_with_warmup"}


@register_algorithm("sft", backend="local")
class LocalSFT:
    metrics: ClassVar[tuple[str, ...]] = ("train/runtime_s",)  # besides the recipe's
    recipe_class: ClassVar[type[SFT]] = SFT  # or a subclass with its own build_batch and loss

    def __init__(self, **params: Any):
        self.recipe = self.recipe_class(**params)
        self.cfg = self.recipe.cfg

    def train(self, ctx: RunContext) -> RunResult:
        from datasets import Dataset
        from transformers import set_seed
        from trl import SFTConfig, SFTTrainer

        cfg, handles = self.cfg, ctx.handles
        tokenizer = handles["tokenizer"]

        # Check: the loss mask needs generation markers (TRL's own error says less).
        custom = self.recipe.custom_training()
        if cfg.assistant_only_loss and not custom and not _can_mask_assistant_turns(tokenizer):
            raise ConfigError(
                "algorithm.params.assistant_only_loss needs a chat template that marks the "
                "assistant turns with {% generation %} … {% endgeneration %}, and the "
                f"tokenizer of '{ctx.config.model.name}' has none (nor does TRL ship a training "
                "template for it); set algorithm.params.assistant_only_loss=false, or add the "
                "markers to its chat_template.jinja"
            )
        set_seed(ctx.seed)  # before the LoRA weights are drawn

        # Data: one conversation per row; TRL applies the chat template and the assistant mask.
        # A recipe's own build_batch makes the examples instead, and its loss scores them.
        trainer_cls, extra = SFTTrainer, {}
        if custom:
            refuse_images_in_recipe(ctx.train_rows, f"{self.recipe.name} (build_batch)")
            examples = self.recipe.build_batch(ctx.train_rows, tokenizer)
            if not examples:
                raise DataError("the recipe's build_batch made no training example")
            dataset = example_dataset(examples)
            trainer_cls = recipe_loss_trainer(SFTTrainer, self.recipe, examples)
            extra = {"data_collator": ExampleCollator(_pad_token_id(tokenizer))}
        else:
            dataset = Dataset.from_list(_examples(ctx.train_rows, tokenizer, ctx.config.model.name))
        # Speed: evsys's batch layout and loss (evsys.backends.local.sft_speed) where it applies.
        # TRL's packing lays out its own batches; a recipe's loss reads its own collator's, and a
        # vision-language model's batches are its processor's (TRL's vision collator).
        speed = ctx.backend.cfg.sft_speed.applied(handles["device"])
        if custom or cfg.packing or is_processor(tokenizer):
            speed = dict.fromkeys(speed, False)
        if any(speed.values()):
            trainer_cls = flat_loss_trainer(SFTTrainer)
            extra = {
                "data_collator": FlatCollator(
                    _pad_token_id(tokenizer),
                    padding_free=speed["padding_free"],
                    shared_prefix=speed["shared_prefix"],
                    scored_only=speed["scored_logits_only"],
                )
            }

        # Trainer config: the recipe's fields, the engine's precision, the user's extra TRL args.
        args = ctx.backend.trainer_args(
            SFTConfig,
            handles,
            output_dir=str(ctx.checkpoint_dir),
            seed=ctx.seed,
            data_seed=ctx.seed,
            learning_rate=cfg.learning_rate,
            # transformers' "constant" skips the warmup; the other backends warm up, then hold.
            lr_scheduler_type=_WITH_WARMUP.get(cfg.lr_schedule, cfg.lr_schedule),
            warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
            weight_decay=cfg.weight_decay,
            per_device_train_batch_size=cfg.batch_size,
            num_train_epochs=cfg.num_epochs,
            max_steps=cfg.max_steps or -1,
            max_length=cfg.max_seq_length,
            packing=cfg.packing,
            # The recipe's examples carry their own weights, already truncated.
            assistant_only_loss=cfg.assistant_only_loss and not custom,
            remove_unused_columns=not custom,  # the collator needs each example's index
            dataset_kwargs={"skip_prepare_dataset": True} if custom else None,
            logging_steps=cfg.log_every,
            save_strategy="no",  # evsys saves adapters itself, as step_N/ and final/
        )

        # Train: a LoRA adapter, metrics and checkpoints through the shared evsys callback.
        with row_attention(handles["model"], enabled=speed.pop("row_attention")) as by_row:
            result = train_adapter(
                ctx,
                trainer_cls,
                cfg,
                label=f"local {self.recipe.name}",
                metric_names=_METRICS,
                headline="loss",
                args=args,
                train_dataset=dataset,
                **extra,
            )
        result.extras["sft_speed"] = speed | {"row_attention": by_row}
        return result


def _pad_token_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id


def _can_mask_assistant_turns(tokenizer: Any) -> bool:
    """The template marks assistant turns, or TRL swaps in a training template that does
    (it ships them for Qwen3, Llama 3, Gemma, …)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tokenizer.chat_template or ""
    if has_generation_markers(template):
        return True
    try:
        return get_training_chat_template(tokenizer) is not None
    except ValueError:  # TRL has no training template for this one
        return False


def _conversation(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's messages; a prompt/answer row becomes a user turn and an assistant turn."""
    if row.get("messages"):
        return row["messages"]
    return [*prompt_messages(row), {"role": "assistant", "content": assistant_text(row)}]


def _examples(rows: list[dict[str, Any]], processing: Any, model: str) -> list[dict[str, Any]]:
    """TRL's dataset rows: ``{"messages"}``, or for a vision-language model ``{"messages",
    "images"}`` (TRL's vision collator renders them with the processor)."""
    if not is_processor(processing):
        refuse_images_without_processor(rows, model, "train")
        return [{"messages": _conversation(r)} for r in rows]
    return [training_example(_conversation(r), f"train row {i}") for i, r in enumerate(rows)]
