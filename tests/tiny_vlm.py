"""A tiny LLaVA (a CLIP vision tower and a 2-layer Llama) built locally for the image tests.

Its processor is LLaVA's own (a CLIP image processor on PIL and numpy, a BPE tokenizer trained
here, a chat template that renders image blocks as ``<image>``), saved with save_pretrained and
loaded back through ``from_pretrained(path)`` like any model directory. 32x32 images, 16 image
tokens each: a training step takes a fraction of a second on CPU.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

# ChatML; block lists render text and an <image> per image; `generation` marks what TRL's
# assistant_only_loss trains on.
CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{ content }}{%- else -%}"
    "{%- for block in content -%}"
    "{%- if block['type'] == 'image' -%}{{ '<image>' }}"
    "{%- elif block['type'] == 'text' -%}{{ block['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- generation -%}{{ render(message['content']) + '<|im_end|>' }}{%- endgeneration -%}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + render(message['content']) + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
COLOURS = {"red": (230, 20, 20), "blue": (20, 20, 230), "green": (20, 200, 20)}
QUESTION = "What colour is this square?"


def build_tiny_vlm(out: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>", "<image>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([QUESTION, *COLOURS], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        extra_special_tokens={"image_token": "<image>"},
    )
    pad, start, end, image = (bpe.token_to_id(t) for t in specials)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=32,
        ),
        text_config=LlamaConfig(
            vocab_size=bpe.get_vocab_size(),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=pad,
            bos_token_id=start,
            eos_token_id=end,
            tie_word_embeddings=True,
        ),
        image_token_id=image,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = pad
    model.generation_config.eos_token_id = end
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
        image_token="<image>",
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def png(colour: tuple[int, int, int], size: tuple[int, int] = (24, 24)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def colour_row(name: str, reference: str, answer: bool = True) -> dict[str, Any]:
    """A chat row showing the square of ``reference`` (an image path or a data: URL)."""
    user = {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": reference}},
            {"type": "text", "text": QUESTION},
        ],
    }
    if not answer:
        return user
    return {"messages": [user, {"role": "assistant", "content": name}], "answer": name}


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def colour_folder(folder: Path) -> dict[str, Path]:
    """``folder/images/<colour>.png`` for every colour."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rgb in COLOURS.items():
        paths[name] = folder / "images" / f"{name}.png"
        paths[name].write_bytes(png(rgb))
    return paths
