"""The local engine: a transformers model on this machine's CPU or GPU, trained with TRL + PEFT."""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from evsys.backends.local import distributed
from evsys.backends.local.models import load_model, require_local_stack
from evsys.backends.local.sft_speed import SFTSpeed
from evsys.config import ModelConfig, Strict
from evsys.cpus import note_torch_threads, torch_threads
from evsys.errors import BackendError, ConfigError, Problem
from evsys.registry import closest, register_backend

Device = Literal["auto", "cpu", "cuda"]
DType = Literal["auto", "float32", "bfloat16", "float16"]


class EngineParams(Strict):
    """Where and in what precision a model runs; shared by the backend and its inference client."""

    device: Device = Field(
        "auto", description="Where the model runs. auto: cuda when a GPU is visible, else cpu."
    )
    dtype: DType = Field(
        "auto",
        description=(
            "Weights and mixed-precision dtype. auto: bfloat16 on a GPU that supports it, else "
            "float32 (never the library default: TRL turns bf16 on even on CPUs without fast "
            "bf16, ≈20× slower)."
        ),
    )
    num_threads: int | None = Field(
        None,
        ge=1,
        description=(
            "torch's intra-op CPU threads. None: OMP_NUM_THREADS when set, else the CPUs this "
            "arm may use (its CPU affinity, SLURM_CPUS_PER_TASK, its launcher's share when arms "
            "run side by side), split among data-parallel ranks. torch's own default, a thread "
            "per core, oversubscribes a machine that runs anything else. Recorded as "
            "runtime.torch_threads in run_result.json."
        ),
    )

    def resolved_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def size_torch_threads(self) -> int:
        """Set torch's intra-op threads for this arm (see :mod:`evsys.cpus`); returns them."""
        import torch

        ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # set by torch.distributed.run
        threads, source = torch_threads(self.num_threads, ranks=ranks)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        note_torch_threads(threads, source)
        return threads

    def resolved_dtype(self) -> str:
        import torch

        if self.dtype != "auto":
            return self.dtype
        gpu = self.resolved_device() == "cuda"
        return "bfloat16" if gpu and torch.cuda.is_bf16_supported() else "float32"


@register_backend("local")
class LocalBackend:
    """transformers + TRL + PEFT on this machine; offline (see evsys.backends.local.models)."""

    inference_client: ClassVar[str] = "local"

    class Config(EngineParams):
        gradient_checkpointing: bool = Field(
            False, description="Recompute activations in the backward pass: less memory, slower."
        )
        attn_implementation: str | None = Field(
            None,
            description="transformers attention kernel (eager, sdpa, flash_attention_2, …). "
            "None: the library's choice.",
        )
        num_processes: int = Field(
            1,
            ge=1,
            description="Data-parallel training processes (DDP through accelerate, launched with "
            "torch.distributed.run): one per GPU the arm holds. The recipe's batch_size stays the "
            "rows per optimizer step, split across the processes.",
        )
        num_nodes: int = Field(
            1,
            ge=1,
            description="Nodes one arm trains across (num_processes ranks on each), as one "
            "multi-node Slurm job: needs --multirun hydra/launcher=slurm with "
            "hydra.launcher.nodes (or resources.nodes) set to the same. The ranks meet through "
            "torch's c10d rendezvous on the job's first node; gloo on CPU, NCCL on GPU.",
        )
        sft_speed: SFTSpeed = Field(
            default_factory=SFTSpeed,
            description="How SFT batches are laid out and scored (each switch: true, false, or "
            "None for the device's default); what a run used is extras.sft_speed in "
            "run_result.json.",
        )
        trl_args: dict[str, Any] = Field(
            default_factory=dict,
            description=(
                "Extra arguments for the TRL trainer config (SFTConfig, GRPOConfig, …), e.g. "
                "{optim: adamw_torch, max_grad_norm: 0.5}. Keys evsys sets from the recipe or "
                "from this backend's fields are refused: set them there."
            ),
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)
        require_local_stack()  # before any work, not at the first heavy import

    def launches_ranks(self) -> bool:
        """Whether this process starts the data-parallel ranks rather than training itself."""
        spread = self.cfg.num_processes > 1 or self.cfg.num_nodes > 1
        return spread and not distributed.in_worker()

    def train_in_ranks(
        self, config: Any, run_id: str, run_dir: Path, rows: list[dict[str, Any]]
    ) -> Any:
        import torch

        wanted = self.cfg.num_processes
        if self.cfg.resolved_device() == "cuda" and wanted > torch.cuda.device_count():
            raise BackendError(
                f"backend.params.num_processes={wanted} needs {wanted} GPUs, and this arm sees "
                f"{torch.cuda.device_count()} (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); with hydra/launcher=gpus set "
                f"hydra.launcher.gpus_per_arm={wanted}"
            )
        return distributed.train_in_ranks(
            config, run_id, run_dir, rows, wanted, num_nodes=self.cfg.num_nodes
        )

    def prepare(self, *, model: ModelConfig, run_dir: Path) -> dict[str, Any]:
        self.cfg.size_torch_threads()
        device, dtype = self.cfg.resolved_device(), self.cfg.resolved_dtype()
        loaded, tokenizer = load_model(
            model.name,
            device=device,
            dtype=dtype,
            attn_implementation=self.cfg.attn_implementation,
            adapter=model.load_checkpoint_path,
            trainable=True,
        )
        return {"model": loaded, "tokenizer": tokenizer, "device": device, "dtype": dtype}

    def trainer_args(self, config_cls: type, handles: dict[str, Any], **ours: Any) -> Any:
        """``config_cls(**ours, precision, **trl_args)``: a TRL config with this engine's settings.

        Every unknown or evsys-owned key of ``trl_args`` is reported at once.
        """
        dtype = handles["dtype"]
        accepted = {f.name for f in dataclasses.fields(config_cls) if f.init}
        ranks = distributed.world_size()
        if ranks > 1:  # the recipe's batch is per optimizer step: each rank takes its share
            per_rank, rest = divmod(ours["per_device_train_batch_size"], ranks)
            if rest or not per_rank:
                raise ConfigError(
                    f"a batch of {ours['per_device_train_batch_size']} rows does not split "
                    f"evenly over backend.params.num_processes={ranks}; make the recipe's "
                    "batch a multiple of it"
                )
            ours["per_device_train_batch_size"] = per_rank
            ours["ddp_find_unused_parameters"] = False  # every LoRA weight is used each step
        # transformers 5.2x renamed gradient_checkpointing (the old name warns); older: the old.
        checkpointing = next(
            k for k in ("activation_checkpointing", "gradient_checkpointing") if k in accepted
        )
        ours |= {
            "bf16": dtype == "bfloat16",
            "fp16": dtype == "float16",
            "use_cpu": handles["device"] == "cpu",
            checkpointing: self.cfg.gradient_checkpointing,
            "report_to": "none",
            "disable_tqdm": True,  # evsys draws its own progress bar
        }
        owned = {*ours, "gradient_checkpointing", "activation_checkpointing"}
        problems = []
        for key, value in self.cfg.trl_args.items():
            path = f"backend.params.trl_args.{key}"
            if key not in accepted:
                problems.append(
                    Problem(
                        path=path,
                        message=f"{config_cls.__name__} has no argument '{key}'",
                        value=value,
                        expected=f"an argument of trl.{config_cls.__name__}",
                        suggestion=closest(key, accepted),
                    )
                )
            elif key in owned:
                problems.append(
                    Problem(
                        path=path,
                        message=f"evsys sets '{key}' itself (from algorithm.params or "
                        "backend.params); change it there",
                        value=value,
                    )
                )
        if problems:
            raise ConfigError(problems, header="backend.params.trl_args cannot be used:")
        return config_cls(**ours, **self.cfg.trl_args)

    def teardown(self, handles: dict[str, Any]) -> None:
        on_gpu = handles.get("device") == "cuda"
        handles.clear()
        gc.collect()
        if on_gpu and "torch" in sys.modules:
            sys.modules["torch"].cuda.empty_cache()
