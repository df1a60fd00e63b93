"""The evolve sweeper's settings (``hydra.sweeper``), validated like any config: one report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evsys.errors import ConfigError, Problem

SETTINGS_PATH = "hydra.sweeper"
PROPOSERS = ("optuna", "llm")
_DIRECTIONS = {"maximize": "max", "max": "max", "minimize": "min", "min": "min"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Objective(_Strict):
    """A metric of ``run_result.json`` and which way is better."""

    metric: str = Field(min_length=1)
    direction: Literal["max", "min"] = "max"

    @field_validator("direction", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        return _DIRECTIONS.get(str(value).lower(), value)


class ProposerSpec(_Strict):
    kind: str = "optuna"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params", mode="before")
    @classmethod
    def _drop_unset(cls, params: Any) -> Any:
        """The sweeper's config lists every proposer's settings, unset (null): only the set
        ones are this proposer's."""
        if isinstance(params, dict):
            return {key: value for key, value in params.items() if value is not None}
        return params

    @field_validator("kind")
    @classmethod
    def _known(cls, kind: str) -> str:
        if kind not in PROPOSERS:
            raise ValueError(f"unknown proposer '{kind}'; expected one of: {', '.join(PROPOSERS)}")
        return kind


class EvolveSettings(_Strict):
    """What ``hydra/sweeper=evolve`` reads from ``hydra.sweeper``."""

    proposer: ProposerSpec = Field(default_factory=ProposerSpec)
    params: dict[str, str] = Field(
        default_factory=dict,
        description="The search space in hydra-optuna-sweeper's grammar: key → interval(…), "
        "choice(…), range(…), tag(log, interval(…)), or a list a,b,c.",
    )
    space: list[str] = Field(
        default_factory=list,
        description="Dotted fields whose range comes from their registry schema (bounds, enums, "
        "bool, int, float).",
    )
    objectives: list[Objective] = Field(
        default_factory=list, description="Empty: the experiment's metadata.success_metric."
    )
    generations: int = Field(3, ge=1)
    population: int = Field(4, ge=1, description="Arms proposed per generation.")
    max_arms: int | None = Field(None, ge=1, description="Most arms launched in all.")
    max_wall_s: float | None = Field(
        None, gt=0, description="No generation starts after this many seconds of the sweep."
    )
    storage: str | None = Field(
        None, description="SQLAlchemy URL of the study's store. None: study.db in the sweep dir."
    )
    seed: int | None = Field(None, ge=0, description="Seeds the proposer.")
    tracker: str | None = Field(
        None,
        description="'module:factory' returning an object with create_generation / "
        "update_generation (the dashboard's); None: no tracker.",
    )


def read_settings(raw: dict[str, Any]) -> EvolveSettings:
    """``hydra.sweeper`` (without ``_target_`` and Hydra's own keys) as settings; ConfigError
    naming every wrong key."""
    fields = {k: v for k, v in raw.items() if k in EvolveSettings.model_fields}
    try:
        return EvolveSettings.model_validate(fields)
    except ValidationError as exc:
        raise ConfigError(
            [
                Problem(
                    path=".".join([SETTINGS_PATH, *(str(p) for p in error["loc"])]),
                    message=error["msg"],
                    value=error.get("input"),
                )
                for error in exc.errors()
            ]
        ) from None
