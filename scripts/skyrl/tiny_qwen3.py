"""Build a tiny Qwen3 (2 layers, 64 wide, random weights) with evsys's tiny tokenizer and chat
template into a directory: a model SkyRL's JAX backend serves on CPU in seconds.

    python scripts/skyrl/tiny_qwen3.py <out_dir>      (in evsys's environment)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

from evsys.backends.local.models import TINY_LLAMA, resolve_model_path


def main(out: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(TINY_LLAMA))
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        initializer_range=0.2,  # as evsys's tiny Llama: no near-ties in greedy decoding
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
