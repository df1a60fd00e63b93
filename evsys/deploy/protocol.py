"""What a deployer is given (a trained run's adapter) and what it returns (a deployment)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True)
class DeploySource:
    """A finished run's trained adapter: what ``evsys deploy <run dir>`` ships."""

    run_dir: Path
    run_id: str
    adapter: Path
    """The PEFT adapter directory (``adapter_config.json`` and its weights)."""
    base_model: str
    """The run's ``model.name``: what the adapter was trained on top of."""
    backend: str
    """The backend that trained it (``local``, ``tinker``, …)."""

    @property
    def deploy_dir(self) -> Path:
        """Where deployers keep what they build for this run (merged weights, server logs)."""
        return self.run_dir / "deploy"


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
                model = my_sdk.upload(source.adapter, base=source.base_model)
                return Deployment(
                    target="my_cloud", endpoint=my_sdk.URL, model_id=model.id,
                    details={"region": self.cfg.region},
                )

    A deployer raises ``ConfigError`` for a run it cannot ship (wrong kind of checkpoint) and
    ``BackendError`` when the target fails; either way nothing is recorded.
    """

    name: ClassVar[str]

    def deploy(self, source: DeploySource) -> Deployment: ...
