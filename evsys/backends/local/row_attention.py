"""Attention row by row for a padding-free SFT batch (``sft_speed.padding_free``).

A padding-free batch is one sequence: a prefix the rows share, then each row's own tokens. Its
block-diagonal mask is right, but a dense attention kernel still computes every query against
every key of the whole sequence and masks most of them away: on SmolLM2-135M, four varied rows
of up to 256 tokens (bench/sft.py), a quarter of the step went to attention over ~730² scores, of
which a row's own are about a third. Here each row attends on its own: its queries against the
prefix's keys and its own, causal, so the scores computed are the ones kept.

This is a transformers attention function (``AttentionInterface``), registered under
:data:`ROW_ATTENTION` with sdpa's mask function. It reads the batch's layout from the
``row_layout`` keyword the model's forward passes down to every attention layer; a forward without
it (an evaluation batch, generation) is plain sdpa, so the model stays correct wherever it is
called while switched (:func:`row_attention`), gradient checkpointing's recomputation included.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

ROW_ATTENTION = "evsys_rows"
ROW_LAYOUT = "row_layout"
"""The forward keyword (and batch key): ``(prefix length, (row 0's own length, row 1's, …))``."""


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ROW_ATTENTION, _attention)
    AttentionMaskInterface.register(ROW_ATTENTION, sdpa_mask)


@contextmanager
def row_attention(model: Any, *, enabled: bool) -> Iterator[bool]:
    """Switch ``model`` (a transformers model on sdpa) to row attention while the block runs.

    Yields whether it switched: only a model that uses sdpa and can change its attention at run
    time is switched (eager, flash kernels and the rest keep their own, with the dense mask).
    ``model`` may carry a PEFT adapter already; its base model is the one switched.
    """
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    switch = (
        enabled
        and getattr(model.config, "_attn_implementation", None) == "sdpa"
        and model._can_set_attn_implementation()
    )
    if not switch:
        yield False
        return
    _register()
    model.set_attn_implementation(ROW_ATTENTION)
    try:
        yield True
    finally:
        model.set_attn_implementation("sdpa")


def uses_row_attention(model: Any) -> bool:
    return getattr(getattr(model, "config", None), "_attn_implementation", None) == ROW_ATTENTION


def _attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """``(output [batch, tokens, heads, dim], None)``, as transformers' sdpa_attention_forward."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    layout = kwargs.pop(ROW_LAYOUT, None)
    if layout is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, **kwargs
        )
    import torch
    import torch.nn.functional as F

    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    prefix, lengths = layout
    options = {"dropout_p": dropout, "scale": scaling}
    # split, not slices: its backward is one concatenation, where each slice's would fill a
    # zero tensor of the whole sequence.
    sizes = [prefix, *lengths] if prefix else list(lengths)
    queries, keys, values = (t.split(sizes, dim=2) for t in (query, key, value))
    outputs = []
    if prefix:
        outputs.append(
            F.scaled_dot_product_attention(
                queries[0], keys[0], values[0], is_causal=True, **options
            )
        )
    for i, length in enumerate(lengths, start=1 if prefix else 0):
        if prefix:
            # Row query j sees the whole prefix and its own tokens up to j: causal, aligned at
            # the bottom right (sdpa's is_causal aligns top left when keys outnumber queries).
            out = F.scaled_dot_product_attention(
                queries[i],
                torch.cat([keys[0], keys[i]], dim=2),
                torch.cat([values[0], values[i]], dim=2),
                attn_mask=_sees_prefix(length, prefix, query.device),
                **options,
            )
        else:
            out = F.scaled_dot_product_attention(
                queries[i], keys[i], values[i], is_causal=True, **options
            )
        outputs.append(out)
    # [batch, heads, tokens, dim] pieces, joined in one copy as [batch, tokens, heads, dim].
    return torch.cat([out.transpose(1, 2) for out in outputs], dim=1), None


@lru_cache(maxsize=128)
def _sees_prefix(length: int, prefix: int, device: Any) -> Any:
    """``[length, prefix + length]``: query j sees key k when k ≤ prefix + j (built once per
    shape, not in each of the model's layers)."""
    import torch

    return torch.ones(length, prefix + length, dtype=torch.bool, device=device).tril(prefix)
