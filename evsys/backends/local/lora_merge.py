"""Sample rollouts from the LoRA-merged weights: one matmul per projection, not three.

A PEFT LoRA layer computes ``W x + B (A x) * scale`` at every forward. During generation the
adapter does not change, so each adapted projection can run once with ``W + B A * scale``: on a
CPU, where a decode step is dominated by the number of small operations, this removes two of
every three matmuls (and the scale and add) from each of the ``max_tokens`` decode steps.

For the duration of the ``with`` block each LoRA layer is replaced in its parent by a plain
``nn.Linear`` holding a fresh merged weight; on exit the LoRA layers go back untouched (nothing
is merged into the base weights and subtracted out again, so no rounding drift accumulates over
steps). The merged copies cost one extra copy of the adapted weights while sampling.

Only plain LoRA on ``nn.Linear`` in float32 is merged: in bfloat16 or float16 the small update
would be rounded away in ``W + BA`` and sampling would no longer follow the adapter; DoRA and
other variants compute more than ``BA``. Anything else samples unmerged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def merged_lora(model: Any) -> Iterator[bool]:
    """Inside the block, each of ``model``'s LoRA layers is replaced by a plain ``nn.Linear``
    holding its merged weight; yields whether they are (False: the model is left as it is). For
    inference only: no gradient reaches the adapter through the merged weights."""
    import torch

    layers = _mergeable_layers(model)
    if not layers:
        yield False
        return
    swapped: list[tuple[Any, str, Any]] = []
    try:
        with torch.no_grad():
            for name, layer in layers:
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name)
                swapped.append((parent, child, layer))
                setattr(parent, child, _merged_linear(layer))
        yield True
    finally:
        for parent, child, layer in reversed(swapped):
            setattr(parent, child, layer)


def _merged_linear(layer: Any) -> Any:
    """A plain ``nn.Linear`` computing what ``layer`` (base + active adapters) computes.

    A plain module, not the LoRA wrapper with its adapters switched off: on a CPU the wrapper's
    own Python (argument checks, adapter bookkeeping) costs as much as the small matmul it wraps.
    """
    import torch

    base = layer.get_base_layer()
    merged = base.weight.detach().clone()
    for name in layer.active_adapters:
        if name in layer.lora_A:
            merged += layer.get_delta_weight(name)
    linear = torch.nn.Linear(base.in_features, base.out_features, bias=False, device="meta")
    linear.weight = torch.nn.Parameter(merged, requires_grad=False)
    linear.bias = base.bias  # shared, unchanged by LoRA
    return linear


def _mergeable_layers(model: Any) -> list[tuple[str, Any]]:
    """``(name, layer)`` of every LoRA layer of ``model`` when all of them can be merged as
    described above; else []."""
    import torch
    from peft.tuners.lora.layer import Linear as LoraLinear
    from peft.tuners.lora.layer import LoraLayer

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    for _, layer in layers:
        if type(layer) is not LoraLinear or layer.merged or layer.disable_adapters:
            return []
        base = layer.get_base_layer()
        if not isinstance(base, torch.nn.Linear) or base.weight.dtype != torch.float32:
            return []
        if any(name in layer.lora_variant for name in layer.active_adapters):  # e.g. DoRA
            return []
    return layers
