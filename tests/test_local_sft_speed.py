"""The local SFT batch layouts (bench/sft.py measures their speed) train on the plain loss.

A padded batch through the model's own logits is the reference: every layout of the same rows
(scored logits only, padding-free, a shared prefix computed once, attention row by row) must give
the same loss and the same LoRA gradients, to float tolerance, on batches hypothesis draws.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

require("trl", "pip install 'evsys[local]'")
require("peft", "pip install 'evsys[local]'")

import torch  # noqa: E402

from evsys.backends.local.row_attention import (  # noqa: E402
    ROW_LAYOUT,
    row_attention,
    uses_row_attention,
)
from evsys.backends.local.sft_speed import FlatCollator, SFTSpeed, common_prefix, flat_loss  # noqa: E402

LAYOUTS = [
    {"padding_free": False, "shared_prefix": False, "scored_only": True},
    {"padding_free": True, "shared_prefix": False, "scored_only": False},
    {"padding_free": True, "shared_prefix": False, "scored_only": True},
    {"padding_free": True, "shared_prefix": True, "scored_only": True},
]


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def lora_model(request: pytest.FixtureRequest) -> Any:
    from peft import LoraConfig, get_peft_model

    from evsys.backends.local.models import TINY_LLAMA, load_model, quiet_libraries

    model, _ = load_model(
        TINY_LLAMA, device="cpu", dtype="float32", attn_implementation=request.param, trainable=True
    )
    torch.manual_seed(0)
    # init_lora_weights=False: lora_B not zero, so every LoRA weight has a gradient to compare.
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    with quiet_libraries():  # peft reads a deprecated transformers property
        return get_peft_model(model, config)


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, list[int]]]:
    """2–4 rows sharing a drawn prefix, each with a drawn mask of scored tokens (one at least)."""
    prefix = draw(st.lists(st.integers(3, 200), max_size=12))
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        own = draw(st.lists(st.integers(3, 200), min_size=1, max_size=20))
        ids = (prefix + own)[:24]
        if len(ids) < 2:
            ids = ids + [7]
        scored = draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
        scored[draw(st.integers(1, len(ids) - 1))] = True
        labels = [t if s and k else -100 for k, (t, s) in enumerate(zip(ids, scored, strict=True))]
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def plain_loss(model: Any, rows: list[dict[str, list[int]]]) -> torch.Tensor:
    """What TRL's padded batch scores: every position's logits, shifted labels, mean NLL."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[i, :n], mask[i, :n], labels[i, :n] = (
            torch.tensor(row["input_ids"]),
            1,
            torch.tensor(row["labels"]),
        )
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def loss_and_grads(model: Any, compute: Any) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = compute()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=batches())
def test_every_layout_gives_the_plain_loss_and_gradients(lora_model: Any, rows: list[dict]) -> None:
    expected, expected_grads = loss_and_grads(lora_model, lambda: plain_loss(lora_model, rows))
    sdpa = lora_model.config._attn_implementation == "sdpa"
    for layout, by_row in [(layout, False) for layout in LAYOUTS] + [
        (LAYOUTS[1], True),
        (LAYOUTS[3], True),
    ]:
        batch = FlatCollator(0, **layout)(rows)
        with row_attention(lora_model, enabled=by_row) as switched:
            assert switched == (by_row and sdpa) == uses_row_attention(lora_model)
            got, grads = loss_and_grads(lora_model, lambda b=batch: flat_loss(lora_model, b)[0])
        assert lora_model.config._attn_implementation in ("sdpa", "eager")  # switched back
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6), (layout, by_row)
        for name, grad in expected_grads.items():
            torch.testing.assert_close(
                grads[name], grad, rtol=1e-4, atol=2e-5, msg=f"{layout} {by_row} {name}"
            )


def test_the_shared_prefix_is_computed_once_and_rows_end_at_their_last_score() -> None:
    rows = [
        {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [-100, -100, -100, 4, 5, -100]},
        {"input_ids": [1, 2, 3, 9, 8], "labels": [-100, -100, -100, -100, 8]},
    ]
    batch = FlatCollator(0, padding_free=True, shared_prefix=True, scored_only=True)(rows)
    # 5 is predicted at 4, so neither 5 nor 6 is fed; 8 is predicted at 9, so 8 is not
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 3]]
    # Row 2's own token sees the prefix and itself, not row 1's tokens.
    assert batch["attention_mask"][0, 0, 4].tolist() == [True, True, True, False, True]
    assert batch["row_tokens"].item() == 11  # what tokens/s counts: the rows' tokens
    assert batch["row_layout"] == (3, (1, 1))  # the prefix, then each row's own tokens
    assert batch["shift_labels"].tolist() == [[4, 5, 8]]
    assert common_prefix([[1, 2], [1, 2]]) == 1  # each row keeps a token of its own
    every_position = FlatCollator(0, padding_free=True, shared_prefix=True, scored_only=False)
    assert every_position(rows)["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 9, 8]]


def test_the_defaults_follow_the_device_and_each_switch_turns_off() -> None:
    assert SFTSpeed().applied("cpu") == {
        "scored_logits_only": True,
        "padding_free": True,
        "shared_prefix": True,
        "row_attention": True,
    }
    assert SFTSpeed().applied("cuda") == {
        "scored_logits_only": True,
        "padding_free": False,
        "shared_prefix": False,
        "row_attention": False,
    }
    assert SFTSpeed(row_attention=False).applied("cpu")["row_attention"] is False
    assert SFTSpeed(shared_prefix=False).applied("cpu")["shared_prefix"] is False
    assert SFTSpeed(padding_free=False, shared_prefix=True).applied("cpu")["shared_prefix"] is False
    assert SFTSpeed(scored_logits_only=False).applied("cpu")["scored_logits_only"] is False


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing_recomputes_each_row_with_its_layout(
    lora_model: Any, reentrant: bool
) -> None:
    # Without its row layout the recomputed attention would be sdpa over the whole sequence
    # with no mask, every row seeing the others: other gradients.
    rows = [
        {"input_ids": [5, 6, 7, 8, 9, 10], "labels": [-100, -100, -100, 8, 9, 10]},
        {"input_ids": [5, 6, 7, 11, 12], "labels": [-100, -100, -100, -100, 12]},
        {"input_ids": [5, 6, 7, 13, 14, 15, 16], "labels": [-100, -100, -100, 13, -100, 15, 16]},
    ]
    expected, expected_grads = loss_and_grads(lora_model, lambda: plain_loss(lora_model, rows))
    batch = FlatCollator(0, **LAYOUTS[3])(rows)
    base = lora_model.get_base_model()
    base.activation_checkpointing_enable({"use_reentrant": reentrant})
    if reentrant:  # the reentrant kind only recomputes what a grad-requiring input reaches
        base.enable_input_require_grads()
    was_training = lora_model.training
    lora_model.train()  # transformers checkpoints only in training mode
    layouts = []  # whether each run of layer 0's attention had the layout
    hook = base.model.layers[0].self_attn.register_forward_pre_hook(
        lambda _, args, kwargs: layouts.append(ROW_LAYOUT in kwargs), with_kwargs=True
    )
    try:
        with row_attention(lora_model, enabled=True) as by_row:
            got, grads = loss_and_grads(lora_model, lambda: flat_loss(lora_model, batch)[0])
    finally:
        hook.remove()
        lora_model.train(was_training)
        base.activation_checkpointing_disable()
        if reentrant:
            base.disable_input_require_grads()
    assert not base.is_activation_checkpointing
    assert layouts == [by_row, by_row]  # forward, and again in the backward pass (sdpa)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=2e-5, msg=name)
