"""The config's building blocks: the seed, the strict base of every model, and the ``{kind,
params}`` envelopes that name a pluggable extension (``kind`` is a registry key; ``params`` is
validated by that extension's own ``Config``, see :mod:`evsys.validation`).

Pydantic alone, below the schema of a run (:mod:`evsys.config`) that builds on them.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evsys import shorthand_forms

SEED_MAX = 2**32 - 1
# numpy, torch and the samplers take 32-bit unsigned seeds: anything else fails at run time.
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors.

    Validators are built on first use: a command loads every extension's Config but validates
    with few of them."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    # Keys a model no longer has, and why: a config that still sets one is told what to do
    # instead, rather than only that the key is unknown.
    retired_keys: ClassVar[dict[str, str]] = {}


# -- {kind, params} envelopes ---------------------------------------------------------------


class ExtensionSpec(Strict):
    """A registered extension and its parameters."""

    registry_kind: ClassVar[str]

    kind: str = Field(description="Registry key of the extension (see `evsys list`).")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Validated by the extension's Config (see `evsys schema <kind> <name>`).",
    )


class AlgorithmConfig(ExtensionSpec):
    registry_kind: ClassVar[str] = "algorithm"

    @model_validator(mode="before")
    @classmethod
    def _routed_key(cls, value: Any) -> Any:
        return shorthand_forms.routed_recipe(value)  # the reference's mock_sft, local_rl, …


class BackendConfig(ExtensionSpec):
    registry_kind: ClassVar[str] = "backend"


class MetricSpec(ExtensionSpec):
    registry_kind: ClassVar[str] = "metric"


class VerifierSpec(ExtensionSpec):
    registry_kind: ClassVar[str] = "verifier"


class TransformSpec(ExtensionSpec):
    registry_kind: ClassVar[str] = "transform"


class EnvironmentSpec(ExtensionSpec):
    registry_kind: ClassVar[str] = "environment"


class InferenceSpec(ExtensionSpec):
    registry_kind: ClassVar[str] = "inference_client"


class BaselineModelSpec(InferenceSpec):
    """An API model scored on a test benchmark as a baseline (``metadata.benchmark[].models``)."""

    name: str | None = Field(
        None, description="Label in metric names (…@<name>). None: params.model, else kind."
    )

    @property
    def label(self) -> str:
        return self.name or str(self.params.get("model") or self.kind)


def baseline_model(entry: str | BaselineModelSpec) -> BaselineModelSpec:
    """``"openai_compatible:gpt-4o-mini"`` → ``{kind: openai_compatible, params: {model: …}}``."""
    if isinstance(entry, BaselineModelSpec):
        return entry
    kind, _, model = entry.partition(":")
    return BaselineModelSpec(kind=kind, params={"model": model})


class DataStoreSpec(ExtensionSpec):
    registry_kind: ClassVar[str] = "data_store"
    kind: str = Field("local", description="Registry key of the data store.")


class LogStoreSpec(ExtensionSpec):
    registry_kind: ClassVar[str] = "log_store"
    kind: str = Field("jsonl", description="Registry key of the log store.")


class DeploySpec(ExtensionSpec):
    """Where a trained adapter is shipped (``evsys deploy``, a single run, a sweep's best arm)."""

    registry_kind: ClassVar[str] = "deployer"


class CallbackSpec(ExtensionSpec):
    """A callback watching training (``callbacks: [{kind, params, on_error}]``)."""

    registry_kind: ClassVar[str] = "callback"
    on_error: Literal["fail", "warn"] | None = Field(
        None,
        description="When the callback raises: `fail` ends the run with an error naming it, "
        "`warn` logs it, records it in run_result.json (callback_<i>_<kind>_error) and goes "
        "on. None: what the callback class declares as its `on_error`, else `fail`.",
    )
