"""The tinker engine: training and sampling on a Tinker service through the ``tinker`` SDK.

``prepare`` checks the service before anything else (health probe, API key, base model), loads
the model's tokenizer locally (chats are rendered here, with its own chat template) and, when
``model.load_checkpoint_path`` names a ``tinker://…/weights/…`` state, creates the training
client from it; otherwise the recipe creates a fresh LoRA training client with its own rank.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from evsys.algorithms.lora import LoraParams
from evsys.backends.tinker.connection import ConnectionParams, connect, sdk_errors, wait
from evsys.backends.tinker.rendering import load_tokenizer
from evsys.config import ModelConfig
from evsys.errors import ConfigError, Problem
from evsys.registry import register_backend

log = logging.getLogger(__name__)

# LoRA target modules → the parts of the model Tinker's LoRA config switches on.
_ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}
_MLP = {"gate_proj", "up_proj", "down_proj"}
_UNEMBED = {"lm_head"}


@register_backend("tinker")
class TinkerBackend:
    """A Tinker service (hosted, or any server speaking its API) through the tinker SDK."""

    inference_client: ClassVar[str] = "tinker"

    class Config(ConnectionParams):
        tokenizer: str | None = Field(
            None,
            description="Tokenizer whose chat template renders the rows: a local directory or a "
            "Hugging Face id already in the cache. None: model.name.",
        )
        load_optimizer_state: bool = Field(
            False,
            description="With model.load_checkpoint_path: also restore the optimizer state "
            "(resuming a run) instead of starting a fresh optimizer (starting a new phase).",
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def prepare(self, *, model: ModelConfig, run_dir: Path) -> dict[str, Any]:
        checkpoint = model.load_checkpoint_path
        if checkpoint is not None:
            check_state_path(checkpoint)
        service = connect(self.cfg)  # the probe and the key first: a bad service fails fast
        handles: dict[str, Any] = {
            "service": service,
            "base_model": model.name,
            "training_client": None,
        }
        try:
            service.check_model(model.name)
            handles["tokenizer"] = load_tokenizer(
                self.cfg.tokenizer or model.name, renderer=model.renderer_name
            )
            if checkpoint is not None:
                create = (
                    service.client.create_training_client_from_state_with_optimizer
                    if self.cfg.load_optimizer_state
                    else service.client.create_training_client_from_state
                )
                with sdk_errors(f"loading {checkpoint}", self.cfg):
                    handles["training_client"] = self.wait(create(checkpoint), "the loaded model")
        except BaseException:
            self.teardown(handles)
            raise
        return handles

    def training_client(self, handles: dict[str, Any], lora: LoraParams, seed: int) -> Any:
        """The run's training client: the one loaded from a checkpoint, else a new LoRA."""
        if handles.get("training_client") is not None:
            return handles["training_client"]
        parts = lora_parts(lora.target_modules)
        client = handles["service"].client
        with sdk_errors(f"creating a LoRA training client for '{handles['base_model']}'", self.cfg):
            future = client.create_lora_training_client(
                handles["base_model"], rank=lora.lora_rank, seed=seed, **parts
            )
            handles["training_client"] = self.wait(future, "the new training client")
        return handles["training_client"]

    def wait(self, future: Any, what: str) -> Any:
        return wait(future, self.cfg, what)

    def teardown(self, handles: dict[str, Any]) -> None:
        service = handles.get("service")
        handles.clear()
        if service is None:
            return
        status = "errored" if sys.exc_info()[0] is not None else "success"
        try:  # finish the session; a service that went away must not hide the run's own error
            service.client.close(status).result(timeout=self.cfg.connect_timeout_s)
        except Exception as exc:
            log.warning("closing the Tinker session failed: %s", exc)


def check_state_path(path: str) -> None:
    """A training state path, ``tinker://<run>/weights/<name>``, or a ConfigError."""
    parts = path.removeprefix("tinker://").split("/")
    if not path.startswith("tinker://") or len(parts) != 3 or parts[1] != "weights":
        raise ConfigError(
            Problem(
                path="model.load_checkpoint_path",
                message="the tinker backend starts from a Tinker training state, "
                "tinker://<run>/weights/<name> (a run's final_checkpoint)",
                value=path,
                expected="tinker://<run>/weights/<name> (a run's final_checkpoint artifact)",
            )
        )


def lora_parts(target_modules: list[str] | str) -> dict[str, bool]:
    """Tinker's LoRA switches (train_attn, train_mlp, train_unembed) for ``target_modules``."""
    if target_modules == "all-linear":
        return {"train_attn": True, "train_mlp": True, "train_unembed": True}
    names = {target_modules} if isinstance(target_modules, str) else set(target_modules)
    unknown = sorted(names - _ATTENTION - _MLP - _UNEMBED)
    if unknown or not names:
        raise ConfigError(
            Problem(
                path="algorithm.params.target_modules",
                message="Tinker's LoRA adapts attention, MLP and unembedding layers as groups: "
                f"use 'all-linear' or names among {sorted(_ATTENTION | _MLP | _UNEMBED)}",
                value=target_modules,
                expected=f"'all-linear', or names among {sorted(_ATTENTION | _MLP | _UNEMBED)}",
            )
        )
    return {
        "train_attn": bool(names & _ATTENTION),
        "train_mlp": bool(names & _MLP),
        "train_unembed": bool(names & _UNEMBED),
    }
