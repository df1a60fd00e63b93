"""Score a batch of GRPO groups with each group's prompt run once: the training forward.

TRL's loss forward runs every completion with its own copy of the prompt, so a group of
``group_size`` completions pays for its prompt ``group_size`` times, forward and backward. Here
the prompt runs once per group, its keys and values (with their autograd history) are shared by
the group's rows through the KV cache, and only the completions run per row. The result is
TRL's: the same positions (TRL counts them over the padded row), the same attention mask, the
log-probability of each completion token under ``logits / temperature`` and its entropy, zero on
padding; gradients reach the prompt's LoRA weights through the shared keys and values.

Only a single process on a plain text model without logit scaling or soft-capping, without
gradient checkpointing, whose rows share prompts, is scored this way: the
caller falls back to TRL's own forward otherwise (None).
"""

from __future__ import annotations

from typing import Any


def shared_prompt_logps(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    logits_to_keep: int,
    *,
    temperature: float,
    compute_entropy: bool,
) -> tuple[Any, Any] | None:
    """``(log-probs, entropies or None)`` of the last ``logits_to_keep`` tokens of each row, each
    ``[rows, logits_to_keep]``; None when the rows share no prompt or the model is not plain."""
    import torch
    from transformers import DynamicCache

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    text = base.config.get_text_config()
    if any(
        getattr(text, name, None) is not None
        for name in ("final_logit_softcapping", "logit_scale", "output_multiplier")
    ) or getattr(text, "lm_head_multiplier", None) not in (None, 1, 1.0):
        return None
    if any(getattr(module, "gradient_checkpointing", False) is True for module in base.modules()):
        return None  # checkpointed layers recompute without a cache
    rows, length = input_ids.shape
    start = length - logits_to_keep  # where the completions begin
    if start < 1:
        return None
    prompt_ids, prompt_mask = input_ids[:, :start], attention_mask[:, :start]
    # Equal prompts anywhere in the batch (TRL shuffles the rows before the loss) run once.
    first: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
    owner: list[int] = []
    for key in zip(map(tuple, prompt_ids.tolist()), map(tuple, prompt_mask.tolist()), strict=True):
        owner.append(first.setdefault(key, len(first)))
    first_rows = [owner.index(group) for group in range(len(first))]
    if len(first) == rows:  # nothing shared: TRL's forward is as good
        return None

    backbone = getattr(base, base.base_model_prefix)
    device = input_ids.device
    index = torch.tensor(owner, device=device)
    cache = DynamicCache(config=base.config)
    prompt_out = backbone(
        input_ids=prompt_ids[first_rows],
        attention_mask=prompt_mask[first_rows],
        position_ids=torch.arange(start, device=device)[None],
        cache=cache,
        use_cache=True,
    ).last_hidden_state
    cache.batch_select_indices(index)  # each row's prompt keys and values: its group's
    completion_out = backbone(
        input_ids=input_ids[:, start:],
        attention_mask=attention_mask,
        position_ids=torch.arange(start, length, device=device)[None],
        cache=cache,
        use_cache=True,
    ).last_hidden_state
    # The state at position t predicts token t + 1: the prompt's last predicts the first.
    hidden = torch.cat([prompt_out[index, -1:], completion_out[:, :-1]], dim=1)
    logits = base.get_output_embeddings()(hidden).float() / temperature
    log_probs = torch.log_softmax(logits, dim=-1)
    targets = input_ids[:, start:]
    valid = attention_mask[:, start:].bool()
    token_logps = log_probs.gather(-1, targets[..., None]).squeeze(-1).masked_fill(~valid, 0.0)
    entropies = None
    if compute_entropy:
        entropies = -(log_probs.exp() * log_probs).sum(-1).masked_fill(~valid, 0.0)
    return token_logps, entropies
