"""`evsys validate`, `evsys plan` and a run accept exactly the same override sets, generated over
the whole config space: every config group and its options, every field of the composed config,
every registered extension's params, and ``{kind, params}`` envelopes (nested ones too, such as
an RL recipe's verifier) replaced by an envelope of another kind.

A run is what ``python -m evsys`` does (evsys.app): the preflight check, which is ``evsys
validate``'s, then Hydra's own strict composition, whose config ``run_task`` validates again. The
strict composition runs here in-process through Hydra's loader (with the rule evsys gives it);
a handful of real ``python -m evsys`` processes confirm the exit codes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import flow, run_evsys
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from evsys.cli.validate import check
from evsys.compose.compose import _group_options, compose, config_loader
from evsys.compose.nodes import config_defaults
from evsys.compose.value_overrides import install
from evsys.config import ExperimentConfig
from evsys.errors import ConfigError
from evsys.paths import primary_config_name
from evsys.preflight import plan_sweep
from evsys.registry import registry_for
from evsys.sweep.plan import bad_arms
from evsys.validation import _specs_in, validate_experiment

MOCK_JUDGE = "{kind: llm_judge, params: {rubric: ok, judge: {kind: mock}}}"
JUDGE = "{kind: llm_judge, params: {judge: {kind: claude, params: {model: claude-haiku-4-5}}}}"


# -- the three entry points ------------------------------------------------------------------


def validate_accepts(overrides: list[str]) -> bool:
    return check(overrides) == []


def plan_accepts(overrides: list[str]) -> bool:
    try:
        arms, _ = plan_sweep(overrides)
    except ConfigError:
        return False
    return not bad_arms(arms)


def strict_config(overrides: list[str]) -> ExperimentConfig | None:
    """The run's own composition: Hydra's loader, struct mode and all, then ``run_task``'s
    validation of the task config (None when either refuses)."""
    install()  # as evsys.app.main and the registry's config source do
    try:
        cfg = config_loader().load_configuration(
            primary_config_name(), list(overrides), run_mode=RunMode.RUN
        )
    except (HydraException, OmegaConfBaseException, ValueError):
        return None
    HydraConfig.instance().set_config(cfg)
    task = copy.deepcopy(cfg)
    with open_dict(task):
        del task["hydra"]
    try:
        return validate_experiment(OmegaConf.to_container(task, resolve=True))
    except (ConfigError, OmegaConfBaseException):
        return None


def assert_agree(overrides: list[str]) -> bool:
    """The three agree on ``overrides``, and the run's config is validate's; returns whether
    they accept."""
    validated = validate_accepts(overrides)
    assert plan_accepts(overrides) == validated, overrides
    # The run checks what validate checks before Hydra starts; Hydra must then compose it too.
    strict = strict_config(overrides) if validated else None
    if validated:
        assert strict is not None, f"validate accepts, the run's Hydra refuses: {overrides}"
        lenient = compose(overrides)
        assert strict.model_dump() == validate_experiment(lenient.config).model_dump(), overrides
    return validated


# -- the config space ------------------------------------------------------------------------

GROUPS = {
    group: options
    for group, options in _group_options(config_loader().repository, "").items()
    if options and not group.startswith("hydra")  # Hydra's own: launchers and sweepers
}
ENVELOPE_KINDS = ("algorithm", "backend", "data_store", "log_store", "inference_client")


def envelopes(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(dotted path, registry kind) of every ``{kind, params}`` envelope of ``config``, nested
    ones and list items (``eval.metrics.0``) included."""
    for loc, spec_type, value in _specs_in(ExperimentConfig, config, ()):
        yield from _envelope_and_nested(loc, spec_type.registry_kind, value)


def _envelope_and_nested(loc: tuple, kind: str, value: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(value, dict):
        return
    yield ".".join(map(str, loc)), kind
    registry = registry_for(kind)
    name = value.get("kind")
    model = registry.config_class(name) if isinstance(name, str) and name in registry else None
    if model is not None and isinstance(value.get("params"), dict):
        for nested_loc, spec_type, nested in _specs_in(model, value["params"], (*loc, "params")):
            yield from _envelope_and_nested(nested_loc, spec_type.registry_kind, nested)


def leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(config, dict) and config:
        for key, value in config.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix, config


HOSTILE = st.sampled_from(["${oc.env:HOME}", "../../etc", "???", "", "a b", "x'y", "${name}"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**33), 2**33),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text("abcxyz_/-.", max_size=8),
    HOSTILE,
)


@st.composite
def params_of(draw: st.DrawFn, kind: str, name: str) -> dict[str, Any]:
    """Params for the extension ``name`` of registry ``kind``: a subset of its fields, each with
    its default (required ones: a scalar) or any scalar; now and then a key it lacks."""
    fields = config_defaults(registry_for(kind).config_class(name))
    chosen = (
        draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=3)) if fields else []
    )
    params = {}
    for field in chosen:
        default = fields[field]
        keep = default != "???" and draw(st.booleans())
        params[field] = default if keep else draw(SCALARS)
    if draw(st.integers(0, 5)) == 0:
        params[draw(st.sampled_from(["judge", "bogus", "fn_name"]))] = draw(SCALARS)
    return params


@st.composite
def override_sets(draw: st.DrawFn) -> list[str]:
    choices = draw(st.dictionaries(st.sampled_from(sorted(GROUPS)), st.just(None), max_size=3))
    lines = [f"{group}={draw(st.sampled_from(GROUPS[group]))}" for group in choices]
    base = compose(lines).config
    for _ in range(draw(st.integers(0, 3))):
        form = draw(st.sampled_from(["leaf", "envelope", "envelope", "param", "add", "merge"]))
        found = list(envelopes(base))
        if form in ("envelope", "param", "merge") and found:
            path, kind = draw(st.sampled_from(found))
            name = draw(st.sampled_from(registry_for(kind).names() or ["none"]))
            params = draw(params_of(kind, name))
            if form == "envelope":  # replaced whole, usually by another kind
                lines.append(f"{path}={flow({'kind': name, 'params': params})}")
            elif form == "merge":  # a dict without a kind merges, as Hydra merges it
                lines.append(f"{path}={flow({'params': params})}")
            elif params:
                key, value = next(iter(params.items()))
                lines.append(f"{path}.params.{key}={flow(value)}")
        elif form == "add":
            lines.append(f"+{draw(st.sampled_from(['notes', 'metadata.extra']))}={draw(SCALARS)!r}")
        else:
            path, value = draw(st.sampled_from(list(leaves(base)) or [("seed", 0)]))
            lines.append(f"{path}={flow(draw(st.one_of(st.just(value), SCALARS)))}")
    # A key once: given twice, a --multirun (whose arms `evsys plan` lists) keeps the last value
    # alone, as Hydra's basic sweeper does, where a single run applies both in turn.
    once = {line.partition("=")[0].lstrip("+"): line for line in reversed(lines)}
    return [line for line in lines if once[line.partition("=")[0].lstrip("+")] is line]


# -- the tests -------------------------------------------------------------------------------


@settings(
    max_examples=60,
    deadline=None,
    # Each example composes three times: shrinking a failure would take many minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(overrides=override_sets())
def test_validate_plan_and_run_accept_the_same_overrides(
    workdir: Path, overrides: list[str]
) -> None:
    event("accepted" if assert_agree(overrides) else "refused")


@pytest.mark.parametrize(
    "overrides",
    [
        ["algorithm=rl", f"algorithm.params.verifier={JUDGE}"],  # the README's RL with a judge
        ["algorithm=rl", f"algorithm.params.verifier={MOCK_JUDGE}"],
        ["algorithm=sdft", f"algorithm.params.verifier={JUDGE}"],
        ["algorithm={kind: rl, params: {max_steps: 3}}"],  # a recipe given whole: sft's go
        ["eval.inference={kind: openai_compatible, params: {model: m}}"],
        [
            "algorithm=gepa_prompt",
            "algorithm.params.reflection_model={kind: openai_compatible, params: {model: gpt-4o}}",
        ],
    ],
)
def test_an_envelope_of_another_kind_replaces_the_one_before(
    workdir: Path, overrides: list[str]
) -> None:
    assert assert_agree(overrides), check(overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        # A dict without a kind merges, as Hydra merges it: keys it adds need `+`, in both.
        ["algorithm=rl", "algorithm.params.verifier={params: {rubric: ok}}"],
        ["algorithm=rl", f"algorithm.params={{verifier: {MOCK_JUDGE}}}"],
        # The previous kind's params are gone with it: in_process's fn_name is not llm_judge's.
        [
            "algorithm=rl",
            f"algorithm.params.verifier={JUDGE}",
            "algorithm.params.verifier.params.fn_name=f",
        ],
    ],
)
def test_what_hydra_refuses_validate_refuses(workdir: Path, overrides: list[str]) -> None:
    assert not assert_agree(overrides)
    assert strict_config(overrides) is None


def test_a_merge_that_adds_a_key_is_refused_with_the_plus_it_needs(workdir: Path) -> None:
    kind = "algorithm.params.verifier.kind=llm_judge"
    line = "algorithm.params.verifier={params: {rubric: ok, judge: {kind: mock}}}"
    problems = {p.path: p for p in check(["algorithm=rl", kind, line])}
    assert set(problems) == {f"algorithm.params.verifier.params.{k}" for k in ("rubric", "judge")}
    assert all(p.expected == f"+{line}" and "'+'" in p.message for p in problems.values())
    assert strict_config(["algorithm=rl", kind, line]) is None  # Hydra's own refusal
    assert assert_agree(["algorithm=rl", kind, f"+{line}"])


def test_a_run_takes_an_envelope_of_another_kind(workdir: Path) -> None:
    """A few real processes: the exit codes of `python -m evsys` and `evsys validate` agree."""
    valid = ["algorithm=rl", "algorithm.params.max_steps=1", "eval=none"]
    replaced = [*valid, "algorithm.params.verifier={kind: format_only}"]
    for overrides, code in [
        (replaced, 0),
        ([*replaced, "algorithm.params.verifier.params.x=1"], 2),
    ]:
        validated = run_evsys("validate", *overrides, cwd=workdir, module=False)
        run = run_evsys(*overrides, "hydra.run.dir=out", cwd=workdir)
        assert (validated.returncode, run.returncode) == (code, code), run.stderr[-2000:]
        assert "Traceback" not in run.stderr + validated.stderr
