"""The mock engine: a :class:`MockPolicy` per run instead of a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from evsys.backends.mock.policy import MockPolicy
from evsys.config import ModelConfig, Strict
from evsys.errors import BackendError
from evsys.registry import register_backend


@register_backend("mock")
class MockBackend:
    """Instant and deterministic: for tests, dry runs and sweeps of the machinery itself."""

    inference_client: ClassVar[str] = "mock"

    class Config(Strict):
        capacity_per_rank: int = Field(
            8, ge=1, description="Prompts the toy policy remembers per unit of LoRA rank."
        )
        fail_at_step: int | None = Field(
            None, ge=1, description="Raise at this training step, to test failure handling."
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def prepare(self, *, model: ModelConfig, run_dir: Path) -> dict[str, Any]:
        policy = None
        if model.load_checkpoint_path:
            try:
                policy = MockPolicy.load(model.load_checkpoint_path)
            except (OSError, ValueError, KeyError) as exc:
                raise BackendError(
                    f"cannot load mock checkpoint '{model.load_checkpoint_path}': {exc}"
                ) from exc
        return {"model_name": model.name, "policy": policy}

    def check_step(self, step: int) -> None:
        if self.cfg.fail_at_step is not None and step >= self.cfg.fail_at_step:
            raise BackendError(
                f"mock backend failed at step {step} (fail_at_step={self.cfg.fail_at_step})"
            )

    def teardown(self, handles: dict[str, Any]) -> None:
        handles.clear()
