"""Sample a batch of GRPO groups in one lean decode loop: each prompt prefilled once for its group.

TRL hands its generation step every prompt ``group_size`` times in a row and calls
``model.generate`` on the lot. This computes the same thing with less work:

- each distinct prompt is prefilled once, and its KV cache copied to the rows of its group
  (the prompt's forward is shared: ``group_size`` times fewer prefill tokens);
- the decode loop is the model's forward, a temperature and a draw, nothing else: ``generate``'s
  per-token machinery (input preparation, logits processors, stopping criteria, keyword
  updates) is written out for the one case GRPO uses.

The draw is ``generate``'s: ``softmax(logits / temperature)`` in float32, one
``torch.multinomial`` per step over the whole batch, finished rows padded, the loop ending when
every row has produced an end token or ``max_new_tokens``. Given the same random state it picks
the tokens ``generate`` picks (a test compares them). Prompts are left-padded, positions counted
from each row's first real token, as ``generate`` counts them.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from evsys.backends.local.decode_threads import DecodeThreads


def sample_completions(
    model: Any,
    prompt_ids: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    pad_token_id: int,
    eos_token_ids: list[int],
    threads: DecodeThreads | None = None,
) -> list[list[int]]:
    """Each prompt's sampled completion, up to and including its first end token.

    ``threads`` picks the torch threads of each decode step (the prefill keeps the arm's).
    """
    import torch
    from transformers import DynamicCache

    device = model.device
    # Consecutive equal prompts are one group: prefill one copy, point the group's rows at it.
    distinct: list[list[int]] = []
    owner: list[int] = []
    for ids in prompt_ids:
        if not distinct or distinct[-1] != ids:
            distinct.append(ids)
        owner.append(len(distinct) - 1)
    width = max(map(len, distinct))
    pad = pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in distinct], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in distinct], device=device)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    rows = torch.tensor(owner, device=device)
    eos = torch.tensor(eos_token_ids, device=device)

    cache = DynamicCache(config=model.config)
    steps: list[Any] = []
    with torch.no_grad():
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache.batch_select_indices(rows)  # each group's rows share their prompt's keys and values
        logits = out.logits[rows, -1, :].to(torch.float32)
        mask, last = mask[rows], positions[rows, -1]
        done = torch.zeros(len(owner), dtype=torch.bool, device=device)
        for step in range(max_new_tokens):
            if temperature != 1.0:
                logits = logits / temperature
            tokens = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1).squeeze(1)
            tokens = torch.where(done, pad, tokens)
            steps.append(tokens)
            done = done | torch.isin(tokens, eos)
            if step + 1 == max_new_tokens or bool(done.all()):
                break
            mask = torch.cat([mask, mask.new_ones((len(owner), 1))], dim=-1)
            last = last + 1
            with threads.step() if threads is not None else nullcontext():
                out = model(
                    input_ids=tokens[:, None],
                    attention_mask=mask,
                    position_ids=last[:, None],
                    cache=cache,
                    use_cache=True,
                )
                logits = out.logits[:, -1, :].to(torch.float32)
    completions = []
    ends = set(eos_token_ids)
    for row in torch.stack(steps, dim=1).tolist():
        end = next((i for i, token in enumerate(row) if token in ends), len(row) - 1)
        completions.append(row[: end + 1])
    return completions
