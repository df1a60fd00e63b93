"""The reference's short YAML forms are rewritten before validation, so they meet any value a
file can hold: generated YAML-like values never raise there (the schema refuses what is wrong)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from evsys.shorthand_forms import benchmark_models, named_stages, routed_recipe

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
KEYS = st.sampled_from(["kind", "name", "model", "models", "path", "dataset_name", "x"])
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


@given(VALUES)
def test_the_short_forms_take_any_value(value: Any) -> None:
    routed_recipe(value)
    benchmark_models(value)
    stages = named_stages(value)
    if isinstance(value, list):  # a stage without a name gets one, the others keep theirs
        assert len(stages) == len(value)
        for before, after in zip(value, stages, strict=True):
            if isinstance(before, dict) and "name" in before:
                assert after == before
            elif isinstance(before, dict):
                assert isinstance(after["name"], str) and after["name"]


def test_a_routed_key_names_its_recipe() -> None:
    assert routed_recipe({"kind": "mock_sft", "params": {}}) == {"kind": "sft", "params": {}}
    assert routed_recipe({"kind": ["mock_sft"]}) == {"kind": ["mock_sft"]}  # the schema's to refuse
