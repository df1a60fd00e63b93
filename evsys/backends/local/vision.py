"""Vision-language models on the local backend: rows whose messages hold image blocks.

A model directory whose ``config.json`` has a ``vision_config`` (LLaVA, Qwen2-VL, Idefics3,
PaliGemma, …) loads as ``AutoModelForImageTextToText`` with its ``AutoProcessor``; the processor
stands where a text model's tokenizer does (TRL's SFTTrainer takes it as ``processing_class`` and
collates images itself). Image blocks of either harbor shape become transformers' own
``{"type": "image", "image": <PIL.Image>}`` blocks, decoded from inline data only
(:func:`evsys.data.images.decode_image`): the processor is never handed a URL or a path to open.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evsys.clients.content import blocks
from evsys.data.images import decode_image
from evsys.errors import BackendError, ConfigError, DataError

Messages = list[dict[str, Any]]
_IMAGE_BLOCKS = ("image_url", "image")


def is_vision_language(path: Path) -> bool:
    """Whether the model saved in ``path`` is a vision-language model (its config has a
    vision tower)."""
    config = path / "config.json"
    try:
        return config.is_file() and "vision_config" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False  # not ours to judge: from_pretrained says what is wrong with it


def load_vision_model(
    path: Path,
    *,
    device: str,
    dtype: str,
    attn_implementation: str | None = None,
    adapter: str | None = None,
    trainable: bool = False,
) -> tuple[Any, Any]:
    """``(model, processor)`` of the vision-language model in ``path``."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from evsys.backends.models import quiet_libraries

    with quiet_libraries():
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=getattr(torch, dtype), attn_implementation=attn_implementation
        )
        processor = AutoProcessor.from_pretrained(path)
    if not hasattr(processor, "image_processor"):
        raise BackendError(
            f"'{path}' holds a vision-language model but its processor "
            f"({type(processor).__name__}) has no image processor; save one with "
            "processor.save_pretrained"
        )
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    if adapter is not None:
        from peft import PeftModel

        with quiet_libraries():
            model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    model.train(trainable)
    return model, processor


def is_processor(processing: Any) -> bool:
    """Whether ``processing`` (a backend's "tokenizer" handle) is a multimodal processor."""
    return hasattr(processing, "image_processor")


def text_tokenizer(processing: Any) -> Any:
    """The tokenizer itself: a processor's own, or ``processing`` when it is one."""
    return processing.tokenizer if is_processor(processing) else processing


def holds_images(messages: Messages) -> bool:
    return any(
        isinstance(block, dict) and block.get("type") in _IMAGE_BLOCKS
        for message in messages
        if isinstance(message.get("content"), list)
        for block in message["content"]
    )


def generation_messages(messages: Messages, what: str) -> Messages:
    """``messages`` as a processor's chat template takes them: every content a block list,
    images decoded (``{"type": "image", "image": <PIL.Image>}``)."""
    return _structured(messages, what, keep_images=True)[0]


def training_example(messages: Messages, what: str) -> dict[str, Any]:
    """One row of TRL's vision dataset: ``messages`` with ``{"type": "image"}`` placeholders
    and ``images``, the decoded images in their order (TRL puts them back in the placeholders)."""
    structured, images = _structured(messages, what, keep_images=False)
    return {"messages": structured, "images": images}


def refuse_images_without_processor(rows: list[dict[str, Any]], model: str, what: str) -> None:
    """A text-only model cannot see images: say so, naming the first row that has some."""
    for index, row in enumerate(rows):
        if holds_images(row.get("messages") or []):
            raise text_only_model(model, f"{what} row {index}")


def refuse_images_in_recipe(rows: list[dict[str, Any]], recipe: str) -> None:
    """Only SFT feeds images to the local model; another recipe names the first row that
    holds some, before any work."""
    for index, row in enumerate(rows):
        if holds_images(row.get("messages") or []):
            raise ConfigError(
                f"train row {index} holds images, and recipe '{recipe}' takes text only on the "
                "local backend; train rows with images with algorithm=sft"
            )


def text_only_model(model: str, what: str) -> ConfigError:
    return ConfigError(
        f"{what} holds images, and model '{model}' is a text-only model (its config.json has "
        "no vision_config); use a vision-language model (AutoModelForImageTextToText with an "
        "AutoProcessor) or drop the image blocks"
    )


def _structured(messages: Messages, what: str, *, keep_images: bool) -> tuple[Messages, list]:
    out, images = [], []
    for turn, message in enumerate(messages):
        content = []
        for block in blocks(message.get("content")):
            kind = block.get("type")
            if kind == "text":
                content.append({"type": "text", "text": str(block.get("text", ""))})
            elif kind in _IMAGE_BLOCKS:
                image = decode_image(block, f"{what} message {turn}")
                images.append(image)
                content.append(
                    {"type": "image", "image": image} if keep_images else {"type": "image"}
                )
            else:
                raise DataError(
                    f"{what} message {turn}: a local vision-language model takes 'text', "
                    f"'image_url' and 'image' blocks, not {kind!r}"
                )
        out.append({"role": message.get("role", "user"), "content": content})
    return out, images
