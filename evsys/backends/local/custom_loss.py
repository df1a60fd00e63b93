"""A recipe's own ``build_batch`` and ``loss`` through TRL's extension points.

The recipe's examples become a pre-tokenized dataset (TRL's preparation skipped), a data
collator pads a batch of them and remembers which examples it holds, and the trainer's
``compute_loss`` hands the recipe the log-probability of every target token, as the tinker
backend's ``forward_backward_custom`` does.
"""

from __future__ import annotations

from typing import Any

from evsys.algorithms.sft import Example

INDEX = "example_index"


def example_dataset(examples: list[Example]) -> Any:
    """One dataset row per example: its input tokens and its place in ``examples``."""
    from datasets import Dataset

    return Dataset.from_list(
        [{"input_ids": e.input_tokens, INDEX: i} for i, e in enumerate(examples)]
    )


class ExampleCollator:
    """Pads a batch of example rows to its longest (right padding, an attention mask)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, :n] = torch.tensor(row["input_ids"])
            mask[i, :n] = 1
        return {
            "input_ids": ids,
            "attention_mask": mask,
            INDEX: torch.tensor([r[INDEX] for r in rows]),
        }


def recipe_loss_trainer(trainer_cls: type, recipe: Any, examples: list[Example]) -> type:
    """``trainer_cls`` whose loss is ``recipe.loss(batch, logprobs)``."""

    class RecipeLossTrainer(trainer_cls):  # type: ignore[misc, valid-type]
        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **_: Any
        ) -> Any:
            import torch

            batch = [examples[i] for i in inputs[INDEX].tolist()]
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            logp = torch.log_softmax(outputs.logits.float(), dim=-1)
            logprobs = []
            for row, example in enumerate(batch):
                targets = torch.tensor(example.target_tokens, device=logp.device)
                n = len(example.target_tokens)
                logprobs.append(logp[row, :n].gather(1, targets[:, None])[:, 0])
            loss = recipe.loss(batch, logprobs)
            return (loss, outputs) if return_outputs else loss

    return RecipeLossTrainer
