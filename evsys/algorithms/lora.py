"""LoRA settings shared by the recipes that train an adapter."""

from __future__ import annotations

from pydantic import Field

from evsys.config import Strict


class LoraParams(Strict):
    lora_rank: int = Field(8, ge=1, description="Rank of the LoRA update matrices.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / rank).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | str = Field(
        "all-linear",
        description="Modules that get an adapter: names, or 'all-linear' for every linear layer.",
    )
