"""A Tinker LoRA checkpoint as a PEFT adapter of its base model, in the run's own directory.

``tinker_peft_adapter`` downloads the checkpoint (evsys.deploy.tinker_download) and converts
Tinker's adapter layout to PEFT's, the mapping tinker-cookbook's ``build_lora_adapter`` makes
for dense models: Tinker names each LoRA pair after the module it adapts under
``base_model.model.`` (its ``model.unembed_tokens`` is the Hugging Face ``lm_head``) and stores
``lora_A`` as ``(rank, in)`` and ``lora_B`` as ``(out, rank)``, unscaled, with ``r`` and
``lora_alpha`` in its ``adapter_config.json``. Every pair is checked against the base model's
linear layers (built on the meta device: no weights are loaded), so a checkpoint of another model
is refused with every mismatch named. The result, ``adapter_config.json`` and
``adapter_model.safetensors``, is what ``peft.PeftModel.from_pretrained(base, path)`` loads.

It lies in ``<run>/deploy/tinker/<digest of the tinker path>/``, renamed into place once complete
(nothing half-written; a later deploy of the same checkpoint reuses it). Its directory name is a
digest, never the service's or the record's text.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evsys.deploy.tinker_download import download_checkpoint, fresh_directory, remove_tree
from evsys.errors import BackendError, ConfigError, Problem

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
_PREFIX = "base_model.model."
_RENAMES = (("model.unembed_tokens", "lm_head"),)


def tinker_peft_adapter(
    checkpoint: str, base_model: str, deploy_dir: Path, connection: Mapping[str, Any]
) -> Path:
    """The PEFT adapter of the ``tinker://`` ``checkpoint`` under ``deploy_dir/tinker``."""
    parent = deploy_dir / "tinker"
    final = parent / hashlib.sha256(checkpoint.encode()).hexdigest()[:16]
    if (final / CONFIG).is_file() and (final / WEIGHTS).is_file():
        return final  # fetched and converted before: renamed into place only once complete
    made = [p for p in (parent, *parent.parents) if not p.exists()]
    work = None
    try:
        work = fresh_directory(parent, ".fetch-")
        download_checkpoint(checkpoint, work / "tinker", connection)
        convert(work / "tinker", base_model, work / "peft")
        remove_tree(final)  # an incomplete one (a file of it removed by hand)
        os.replace(work / "peft", final)
    except OSError as exc:  # the run's directory is not writable, the disk is full, …
        _clean_up(work, made)
        raise BackendError(f"writing the adapter under {parent} failed: {exc}") from None
    except BaseException:
        _clean_up(work, made)
        raise
    remove_tree(work)
    return final


def _clean_up(work: Path | None, made: list[Path]) -> None:
    """Remove the work directory, then the directories this made, innermost first, if empty."""
    if work is not None:
        remove_tree(work)
    for directory in made:
        with contextlib.suppress(OSError):
            if directory.exists() and not any(directory.iterdir()):
                directory.rmdir()


def convert(tinker_dir: Path, base_model: str, out: Path) -> None:
    """Write the PEFT adapter of the Tinker adapter in ``tinker_dir`` to ``out`` (a new
    directory). BackendError: the download is no readable adapter; ConfigError: its weights do
    not fit ``base_model``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    config = _tinker_config(tinker_dir)
    try:
        tensors = load_file(tinker_dir / WEIGHTS)
    except (SafetensorError, OSError, ValueError) as exc:
        raise BackendError(f"the downloaded {WEIGHTS} is corrupt or truncated: {exc}") from None
    rank = int(config["r"])
    pairs, problems = _pairs(tensors, base_model, _linear_shapes(base_model), rank)
    if problems:
        raise ConfigError(
            problems,
            header=f"the Tinker checkpoint's LoRA weights do not fit the base model {base_model}:",
        )
    weights: dict[str, Any] = {}
    for module, (lora_a, lora_b) in sorted(pairs.items()):
        weights[f"{_PREFIX}{module}.lora_A.weight"] = lora_a.contiguous()
        weights[f"{_PREFIX}{module}.lora_B.weight"] = lora_b.contiguous()
    out.mkdir()
    save_file(weights, str(out / WEIGHTS), metadata={"format": "pt"})
    peft_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": config["lora_alpha"],
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "target_modules": sorted({module.rsplit(".", 1)[-1] for module in pairs}),
        "modules_to_save": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    (out / CONFIG).write_text(json.dumps(peft_config, indent=2) + "\n", encoding="utf-8")


def _tinker_config(tinker_dir: Path) -> dict[str, Any]:
    names = sorted(p.name for p in tinker_dir.rglob("*") if p.is_file())
    if any(name.endswith(".age") for name in names):
        raise ConfigError(
            Problem("run_dir", "the Tinker checkpoint is age-encrypted: decrypt it first")
        )
    if CONFIG not in names or WEIGHTS not in names:
        raise BackendError(
            f"the downloaded checkpoint has no {CONFIG} and {WEIGHTS} (it has: "
            f"{', '.join(names) or 'nothing'}): not a LoRA adapter"
        )
    try:
        config = json.loads((tinker_dir / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackendError(f"the downloaded {CONFIG} is corrupt: {exc}") from None
    rank, alpha = (config.get("r"), config.get("lora_alpha")) if isinstance(config, dict) else ()
    if not (isinstance(rank, int) and not isinstance(rank, bool) and rank > 0):
        raise BackendError(f"the downloaded {CONFIG} has no LoRA rank r (a positive integer)")
    if not (isinstance(alpha, int | float) and not isinstance(alpha, bool) and alpha > 0):
        raise BackendError(f"the downloaded {CONFIG} has no lora_alpha (a positive number)")
    if not math.isfinite(alpha):
        raise BackendError(f"the downloaded {CONFIG} has a lora_alpha that is not finite")
    return config


def _pairs(
    tensors: dict[str, Any], base_model: str, linear: dict[str, tuple[int, int]], rank: int
) -> tuple[dict[str, tuple[Any, Any]], list[Problem]]:
    """``module → (lora_A, lora_B)``, and a Problem for each weight that does not fit."""
    pairs: dict[str, tuple[Any, Any]] = {}
    problems: list[Problem] = []
    for key in sorted(k for k in tensors if k.endswith(".lora_A.weight")):
        name = key.removesuffix(".lora_A.weight")
        lora_a, lora_b = tensors[key], tensors.get(f"{name}.lora_B.weight")
        module = name.removeprefix(_PREFIX)
        for old, new in _RENAMES:
            module = new if module == old else module
        shape = linear.get(module)
        if lora_b is None:
            problems.append(Problem(key, "has no lora_B partner"))
        elif lora_a.ndim != 2 or lora_b.ndim != 2:
            problems.append(
                Problem(key, "is a mixture-of-experts (3-D) LoRA weight, not deployable here")
            )
        elif shape is None:
            problems.append(Problem(key, f"adapts {module}, which {base_model} has no linear of"))
        elif tuple(lora_a.shape) != (rank, shape[1]) or tuple(lora_b.shape) != (shape[0], rank):
            problems.append(
                Problem(
                    key,
                    f"lora_A {tuple(lora_a.shape)} and lora_B {tuple(lora_b.shape)} do not fit "
                    f"{module} of {base_model}",
                    expected=f"lora_A {(rank, shape[1])} and lora_B {(shape[0], rank)}",
                )
            )
        else:
            pairs[module] = (lora_a, lora_b)
    if not pairs and not problems:
        problems.append(Problem(WEIGHTS, "holds no LoRA weights (no *.lora_A.weight)"))
    return pairs, problems


@functools.lru_cache(maxsize=4)
def _linear_shapes(base_model: str) -> dict[str, tuple[int, int]]:
    """``module name → (out, in)`` of every linear layer of ``base_model``, from its config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from evsys.backends.models import quiet_libraries, resolve_model_path

    try:
        path = resolve_model_path(base_model)
        with quiet_libraries():
            config = AutoConfig.from_pretrained(path)
    except Exception as exc:  # any reason the base model's config cannot be had
        raise ConfigError(
            Problem("model.name", f"the base model cannot be loaded: {exc}", value=base_model)
        ) from None
    with torch.device("meta"), quiet_libraries():
        model = AutoModelForCausalLM.from_config(config)
    return {
        name: (module.out_features, module.in_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
