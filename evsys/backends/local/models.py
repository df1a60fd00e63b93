"""The base models the local backend loads. The text models' loading moved to
:mod:`evsys.backends.models`, shared with the tinker backend and local deploys (the names stay
importable from here); a vision-language model loads with its processor
(:mod:`evsys.backends.local.vision`)."""

from __future__ import annotations

from typing import Any

from evsys.backends import models as text_models
from evsys.backends.local.vision import is_vision_language, load_vision_model
from evsys.backends.models import SMOLLM2_135M as SMOLLM2_135M
from evsys.backends.models import SMOLLM2_CHAT_TEMPLATE as SMOLLM2_CHAT_TEMPLATE
from evsys.backends.models import TINY_CHAT_TEMPLATE as TINY_CHAT_TEMPLATE
from evsys.backends.models import TINY_LLAMA as TINY_LLAMA
from evsys.backends.models import quiet_libraries as quiet_libraries
from evsys.backends.models import require_local_stack as require_local_stack
from evsys.backends.models import resolve_model_path as resolve_model_path


def load_model(
    name: str,
    *,
    device: str,
    dtype: str,
    attn_implementation: str | None = None,
    adapter: str | None = None,
    trainable: bool = False,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a text model, ``(model, processor)`` for a vision-language
    one; ``adapter`` (a PEFT adapter directory) on top."""
    require_local_stack()
    path = resolve_model_path(name)
    if not is_vision_language(path):
        return text_models.load_model(
            name,
            device=device,
            dtype=dtype,
            attn_implementation=attn_implementation,
            adapter=adapter,
            trainable=trainable,
        )
    text_models.require_adapter_dir(adapter)
    return load_vision_model(
        path,
        device=device,
        dtype=dtype,
        attn_implementation=attn_implementation,
        adapter=adapter,
        trainable=trainable,
    )
