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

from evsys.backends.local.row_attention import row_attention, uses_row_attention  # noqa: E402
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
    # 5 is predicted at 4, so 5 and 6 are not fed; 8 at 9, so 8 is not
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
