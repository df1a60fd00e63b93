"""What a deployer is given (a trained run's adapter) and what it returns (a deployment)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True)
class DeploySource:
    """A finished run's trained weights: what ``evsys deploy <run dir>`` ships."""

    run_dir: Path
    run_id: str
    checkpoint: str
    """The run's final checkpoint (``artifacts.final_checkpoint``): a directory on this machine,
    absolute, or a service's URI (``tinker://…``)."""
    base_model: str
    """The run's ``model.name``: what the checkpoint was trained on top of."""
    backend: str
    """The backend that trained it (``local``, ``mock``, ``tinker``, …)."""
    backend_params: dict[str, Any] = field(default_factory=dict, compare=False)
    """The run's recorded ``backend.params``: where a ``tinker://`` checkpoint is fetched from
    (``base_url``, ``api_key_env``), the researcher's own config."""

    @property
    def deploy_dir(self) -> Path:
        """Where deployers keep what they build for this run (merged weights, server logs)."""
        return self.run_dir / "deploy"

    def peft_adapter(self) -> Path:
        """The checkpoint as a PEFT LoRA adapter directory; a ConfigError (bad input: nothing is
        deployed) when it is not one. A ``tinker://`` checkpoint is downloaded through the
        tinker SDK and converted first, under ``deploy_dir`` (evsys.deploy.tinker_adapter)."""
        from evsys.errors import ConfigError, Problem

        if self.checkpoint.startswith("tinker://"):
            from evsys.deploy.tinker_adapter import tinker_peft_adapter

            return tinker_peft_adapter(
                self.checkpoint, self.base_model, self.deploy_dir, self.backend_params
            )
        adapter = Path(self.checkpoint)
        if "://" in self.checkpoint or not (adapter / "adapter_config.json").is_file():
            where = "lives on a service" if "://" in self.checkpoint else "is not a LoRA adapter"
            raise ConfigError(
                Problem(
                    path="run_dir",
                    message=f"its final checkpoint {self.checkpoint} {where} (no "
                    f"adapter_config.json): the {self.backend} backend's checkpoints cannot be "
                    "deployed here; train with backend=local",
                    value=str(self.run_dir),
                )
            )
        return adapter


@dataclass
class Deployment:
    """One deployment of a run, as ``run_result.json`` records it under ``deployments``.

    ``endpoint`` is an OpenAI-compatible API root (up to ``/v1``) and ``model_id`` the model name
    to send to it, so ``openai_compatible`` with ``base_url=endpoint, model=model_id`` queries it.
    ``details`` holds what only this target needs (a local server's pid and log; a provider's
    resource names). Never a secret.
    """

    target: str
    endpoint: str
    model_id: str
    status: str = "running"
    deployed_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Deployer(Protocol):
    """Ships a trained adapter somewhere that serves it.

    Implementors provide ``deploy``; a nested ``Config`` validates the params (``key=value`` on
    ``evsys deploy``, or a sweep's ``deploy.params``). ``stop`` is optional: deployers that start
    something they own (a local server) end it there::

        @register_deployer("my_cloud")
        class MyCloud:
            class Config(Strict):
                region: str = Field("eu", description="Where the model is served.")

            def __init__(self, **params):
                self.cfg = self.Config(**params)

            def deploy(self, source: DeploySource) -> Deployment:
                model = my_sdk.upload(source.peft_adapter(), base=source.base_model)
                return Deployment(
                    target="my_cloud", endpoint=my_sdk.URL, model_id=model.id,
                    details={"region": self.cfg.region},
                )

    A deployer raises ``ConfigError`` for a run it cannot ship (``source.peft_adapter()`` does,
    for a checkpoint that is no LoRA adapter) and ``BackendError`` when the target fails; either
    way nothing is recorded. One that creates things removes them when it fails afterwards: it
    registers each with an ``evsys.deploy.cleanup.Undo`` and deploys under ``with undo:``, which
    removes them and raises ``DeployFailed`` naming what could not be removed (recorded as a
    ``failed`` entry).
    """

    name: ClassVar[str]

    def deploy(self, source: DeploySource) -> Deployment: ...
