"""Faster local SFT: the batch layout and loss evsys uses instead of TRL's padded batches.

Measured on SmolLM2-135M (bench/sft.py), a CPU step's time goes to the backbone on every token
of every row, padding included, and to the LM head (a 49k-token vocabulary) on every position,
though assistant-only loss scores a fifth of them. Four changes, each with a switch in
``backend.params.sft_speed`` and each recorded in run_result.json (``extras.sft_speed``):

- ``scored_logits_only``: the LM head and the loss run only at the positions whose next token is
  scored (``logits_to_keep``, a transformers argument), not on the prompt and the padding; and a
  row's tokens after its last scored position (the chat template's closing tokens) are not fed
  to the model at all: nothing the loss reads depends on them.
- ``padding_free``: a batch's rows become one sequence, each row attending only to itself (a
  block-diagonal causal mask, positions restarting per row): no padding is computed.
- ``shared_prefix``: with ``padding_free``, the prefix every row of the batch shares (the chat
  template's header, a common system prompt) is computed once, and each row's own tokens attend
  to it and to themselves: the prefix's keys and values are those of each row alone, so the loss
  is the padded batch's, with fewer tokens through the model.
- ``row_attention``: with ``padding_free`` on an sdpa model, attention runs row by row
  (:mod:`evsys.backends.local.row_attention`) instead of over the whole sequence under the
  block-diagonal mask, which computes every row against every other and throws most away.

The loss is TRL's: the summed negative log-likelihood of the scored tokens over their count
(``num_items_in_batch`` under gradient accumulation). ``tests/test_local_sft_speed.py`` checks
that it and its gradients equal the plain padded batch's.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from evsys.backends.local.row_attention import ROW_LAYOUT, uses_row_attention
from evsys.extension_specs import Strict

# What a batch carries besides the model inputs: where to score and what.
KEEP, PICK_ROW, PICK_COL, TARGETS, ROW_TOKENS = (
    "keep_positions",
    "pick_rows",
    "pick_columns",
    "shift_labels",
    "row_tokens",
)


class SFTSpeed(Strict):
    """How the local backend lays out and scores an SFT batch; None: the device's default."""

    scored_logits_only: bool | None = Field(
        None,
        description="LM head and loss only at scored positions. None: on (CPU and CUDA).",
    )
    padding_free: bool | None = Field(
        None,
        description="A batch's rows as one sequence with a block-diagonal mask, no padding. "
        "None: on for CPU; off for CUDA (a dense mask grows with the batch's tokens squared).",
    )
    shared_prefix: bool | None = Field(
        None,
        description="With padding_free: the rows' common prefix computed once per batch. "
        "None: as padding_free.",
    )

    row_attention: bool | None = Field(
        None,
        description="With padding_free on an sdpa model: attention row by row, not over the "
        "whole batch under its block-diagonal mask. None: as padding_free.",
    )

    def applied(self, device: str) -> dict[str, bool]:
        """What this run asks for on ``device``: each switch, or its default there.

        ``row_attention`` is what is asked; whether the model could switch (it must use sdpa)
        is known once it is loaded, and the run records that instead.
        """
        cpu = device == "cpu"
        padding_free = cpu if self.padding_free is None else self.padding_free
        shared = padding_free if self.shared_prefix is None else self.shared_prefix
        rows = padding_free if self.row_attention is None else self.row_attention
        scored = True if self.scored_logits_only is None else self.scored_logits_only
        return {
            "scored_logits_only": scored,
            "padding_free": padding_free,
            "shared_prefix": shared and padding_free,
            "row_attention": rows and padding_free,
        }


class FlatCollator:
    """Lays out a batch of TRL-prepared rows (``input_ids``, ``labels`` with -100 where unscored).

    Each scored token ``labels[i][k]`` is predicted by row ``i``'s position ``k - 1``; the batch
    says where that position lies in the model's input (``keep_positions``, and which of the kept
    ones: ``pick_rows``, ``pick_columns``) and the targets (``shift_labels``).
    """

    def __init__(
        self, pad_token_id: int, *, padding_free: bool, shared_prefix: bool, scored_only: bool
    ):
        self.pad_token_id = pad_token_id
        self.padding_free = padding_free
        self.shared_prefix = shared_prefix and padding_free
        self.scored_only = scored_only

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = [list(r["input_ids"]) for r in rows]
        labels = [list(r["labels"]) for r in rows]
        scored = [
            (i, k, label)
            for i, row in enumerate(labels)
            for k, label in enumerate(row)
            if k and label != -100
        ]
        row_tokens = sum(len(row) for row in ids)
        if self.scored_only:  # a row's last scored token k is predicted at k - 1: cut there
            ends = {i: k for i, k, _ in scored}  # in order, so each row's last
            ids = [row[: ends.get(i, len(row))] for i, row in enumerate(ids)]
        batch = self._flat(ids) if self.padding_free else self._padded(ids)
        where = batch.pop("where")  # (row, token index) → (batch row, position)
        places = [where(i, k - 1) for i, k, _ in scored]
        if self.scored_only:
            keep = sorted({position for _, position in places})
        else:
            keep = list(range(batch["input_ids"].shape[1]))
        column = {position: c for c, position in enumerate(keep)}
        batch[KEEP] = torch.tensor(keep, dtype=torch.long)
        batch[PICK_ROW] = torch.tensor([row for row, _ in places], dtype=torch.long)
        batch[PICK_COL] = torch.tensor([column[p] for _, p in places], dtype=torch.long)
        batch[TARGETS] = torch.tensor([[label for _, _, label in scored]], dtype=torch.long)
        batch["labels"] = batch[TARGETS]  # the trainer counts num_items_in_batch from these
        batch[ROW_TOKENS] = torch.tensor(row_tokens)
        return batch

    def _padded(self, ids: list[list[int]]) -> dict[str, Any]:
        import torch

        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "where": lambda i, k: (i, k)}

    def _flat(self, ids: list[list[int]]) -> dict[str, Any]:
        import torch

        prefix = common_prefix(ids) if self.shared_prefix and len(ids) > 1 else 0
        tokens, positions, segments, starts = (
            list(ids[0][:prefix]),
            list(range(prefix)),
            [-1] * prefix,
            [],
        )
        for i, row in enumerate(ids):
            starts.append(len(tokens) - prefix)  # where row i's token `prefix` lies
            tokens += row[prefix:]
            positions += range(prefix, len(row))
            segments += [i] * (len(row) - prefix)
        position = torch.tensor(positions)
        segment = torch.tensor(segments)
        # Query q sees key k when k is not later in its own row, and k is its row's or the prefix's.
        allowed = (position[None, :] <= position[:, None]) & (
            (segment[None, :] == segment[:, None]) | (segment[None, :] == -1)
        )

        def where(i: int, k: int) -> tuple[int, int]:
            return (0, k) if k < prefix else (0, starts[i] + k)

        return {
            "input_ids": torch.tensor([tokens], dtype=torch.long),
            "position_ids": position[None],
            "attention_mask": allowed[None, None],
            # For row attention (plain ints: the trainer moves tensors, not these).
            ROW_LAYOUT: (prefix, tuple(len(row) - prefix for row in ids)),
            "where": where,
        }


def common_prefix(ids: list[list[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own."""
    shortest = min(len(row) for row in ids)
    n = 0
    while n < shortest - 1 and all(row[n] == ids[0][n] for row in ids):
        n += 1
    return n


def flat_loss_trainer(trainer_cls: type) -> type:
    """``trainer_cls`` (TRL's SFTTrainer) whose training loss reads a :class:`FlatCollator` batch."""

    class FlatLossTrainer(trainer_cls):  # type: ignore[misc, valid-type]
        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            if KEEP not in inputs:  # not one of ours (an evaluation dataset): TRL's own loss
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss, accuracy, outputs = flat_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # As Trainer.compute_loss does: num_items_in_batch counts the tokens of every
                # rank, and DDP averages the ranks' gradients, so each rank's share is scaled
                # back up (without it, N ranks train and log at 1/N of the loss).
                loss = loss * _data_parallel_ranks(self)
            mode = "train" if self.model.training else "eval"
            gather = self.accelerator.gather_for_metrics
            self._metrics[mode]["mean_token_accuracy"].append(gather(accuracy).mean().item())
            if mode == "train":
                self._total_train_tokens += int(gather(inputs[ROW_TOKENS]).sum().item())
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return (loss, outputs) if return_outputs else loss

    return FlatLossTrainer


def _data_parallel_ranks(trainer: Any) -> int:
    """The ranks whose batches differ, as Trainer.compute_loss counts them."""
    if trainer.args.n_gpu > 1:
        return int(trainer.args.n_gpu)
    tensor_parallel = trainer.get_tp_size() if hasattr(trainer, "get_tp_size") else 1
    return int(trainer.accelerator.num_processes // tensor_parallel)


def model_inputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """The token inputs of a batch as ``model`` takes them. A padding-free batch's boolean
    block-diagonal mask becomes additive in the model's dtype (what eager and sdpa take),
    unless the model attends row by row: then it reads the batch's row layout instead."""
    import torch

    mask = batch.get("attention_mask")
    by_row = ROW_LAYOUT in batch and uses_row_attention(model)
    if mask is not None and mask.dim() == 4 and not by_row:
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            ~mask, torch.finfo(dtype).min
        )
    inputs = {
        "input_ids": batch["input_ids"],
        "attention_mask": mask,
        "position_ids": batch.get("position_ids"),
    }
    return inputs | ({ROW_LAYOUT: batch[ROW_LAYOUT]} if by_row else {})


def flat_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
    """``(loss, token accuracy, model outputs)`` of a :class:`FlatCollator` batch."""
    import torch
    import torch.nn.functional as F

    keep = inputs[KEEP]
    outputs = model(
        **model_inputs(model, inputs),
        logits_to_keep=keep if keep.numel() else 1,
        use_cache=False,
    )
    logits = outputs.logits[inputs[PICK_ROW], inputs[PICK_COL]].float()
    targets = inputs[TARGETS][0]
    total = F.cross_entropy(logits, targets, reduction="sum")
    count = targets.numel() if num_items_in_batch is None else num_items_in_batch
    loss = total / torch.as_tensor(count, device=total.device).clamp(min=1)
    with torch.no_grad():
        hits = (logits.argmax(-1) == targets).float()
        accuracy = hits.mean() if hits.numel() else hits.new_zeros(())
    return loss, accuracy, outputs
