"""Registries: decorators, duplicates, lookups that help, schemas, routing to backends."""

from __future__ import annotations

import pytest
from pydantic import Field

from evsys.config import Strict
from evsys.errors import EvsysError, UnknownExtensionError
from evsys.registry import (
    ALGORITHMS,
    METRICS,
    register_algorithm,
    register_metric,
    registry_for,
    resolve_algorithm,
)


def test_unknown_name_lists_what_exists_and_the_closest(clean_registries: None) -> None:
    with pytest.raises(UnknownExtensionError) as caught:
        METRICS.get("exact_mtch")
    (problem,) = caught.value.problems
    assert problem.suggestion == "exact_match"
    assert "pass_at_k" in problem.expected
    assert isinstance(caught.value, LookupError) and isinstance(caught.value, ValueError)


def test_duplicates_are_refused_unless_asked(clean_registries: None) -> None:
    @register_metric("twice")
    class First:
        def compute(self, *, predictions, targets):
            return 0.0

    class Second:
        def compute(self, *, predictions, targets):
            return 1.0

    with pytest.raises(EvsysError, match="already registered"):
        register_metric("twice")(Second)
    assert METRICS.get("twice") is First

    register_metric("twice", overwrite_ok=True)(Second)
    assert METRICS.get("twice") is Second
    assert Second.name == "twice"


def test_schema_for_is_the_config_json_schema(clean_registries: None) -> None:
    @register_metric("scaled")
    class Scaled:
        class Config(Strict):
            factor: float = Field(2.0, gt=0, description="Multiplier.")

        def __init__(self, **params):
            self.cfg = self.Config(**params)

    schema = METRICS.schema_for("scaled")
    assert schema["properties"]["factor"]["description"] == "Multiplier."
    assert METRICS.build("scaled", {"factor": 3}).cfg.factor == 3


def test_registry_for_accepts_singular_and_plural() -> None:
    assert registry_for("log_store") is registry_for("log_stores")
    with pytest.raises(UnknownExtensionError) as caught:
        registry_for("metricz")
    assert caught.value.problems[0].suggestion in ("metric", "metrics")


def test_recipes_route_to_their_backend_implementation(clean_registries: None) -> None:
    from evsys.backends.mock.sft import MockSFT

    assert resolve_algorithm("sft", "mock") is MockSFT

    @register_algorithm("only_recipe")
    class OnlyRecipe:
        class Config(Strict):
            pass

    with pytest.raises(UnknownExtensionError, match="no implementation on backend 'mock'"):
        resolve_algorithm("only_recipe", "mock")

    @register_algorithm("anywhere")
    class Anywhere:
        def train(self, ctx):
            raise NotImplementedError

    assert resolve_algorithm("anywhere", "mock") is Anywhere
    assert "anywhere" in ALGORITHMS


def test_registering_makes_a_group_option_without_yaml(clean_registries: None, workdir) -> None:
    from evsys.compose.compose import compose_and_validate

    @register_algorithm("cosine_toy")
    class CosineToy:
        """Toy algorithm."""

        class Config(Strict):
            steps: int = Field(100, gt=0)
            amplitude: float = Field(description="required: no default")

        def __init__(self, **params):
            self.cfg = self.Config(**params)

        def train(self, ctx):
            raise NotImplementedError

    composition, config = compose_and_validate(
        ["algorithm=cosine_toy", "algorithm.params.amplitude=0.5", "algorithm.params.steps=7"]
    )
    assert config.algorithm.kind == "cosine_toy"
    assert config.algorithm.params == {"steps": 7, "amplitude": 0.5}
    assert composition.sources["algorithm.params.steps"] == "override 'algorithm.params.steps=7'"
    assert composition.sources["algorithm.kind"] == "registry defaults of algorithm=cosine_toy"
