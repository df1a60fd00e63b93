"""Run directories for deploy tests, written as a finished run writes them, without training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = {
    "peft_type": "LORA",
    "r": 8,
    "lora_alpha": 16,
    "target_modules": ["v_proj", "q_proj"],
    "base_model_name_or_path": "evsys/tiny-llama",
}


def finished_run(
    run_dir: Path,
    *,
    status: str = "completed",
    adapter: bool = True,
    backend: str = "local",
    weights: bytes = b"\x00\x01adapter-weights" * 64,
) -> Path:
    """A run directory whose record says it finished, with a LoRA adapter as its final
    checkpoint (or, with ``adapter=False``, a mock backend's checkpoint)."""
    final = run_dir / "checkpoints" / "final"
    final.mkdir(parents=True)
    if adapter:
        (final / "adapter_config.json").write_text(json.dumps(ADAPTER_CONFIG))
        (final / "adapter_model.safetensors").write_bytes(weights)
    else:
        (final / "mock_policy.json").write_text("{}")
    record: dict[str, Any] = {
        "schema_version": 1,
        "run_id": "sft-local-20261122-103107-87f48e",
        "name": "sft-local",
        "status": status,
        "finished": True,
        "metrics": {"train/steps": 2},
        "artifacts": {"final_checkpoint": str(final)},
        "config": {"model": {"name": "evsys/tiny-llama"}, "backend": {"kind": backend}},
    }
    (run_dir / "run_result.json").write_text(json.dumps(record, indent=2))
    return run_dir


def record(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run_result.json").read_text())
