"""A proposal is data: the evolve sweeper's proposers may set only the declared search space.

Hostile answers (hypothesis-generated override lines mixing legal keys, the machinery's keys,
``${…}``, ``+``/``~``, ``hydra.``, sweep syntax, paths and unicode) go through the real LLM
proposer, the real ``openai`` SDK and the OpenAI-protocol server of tests/vendor_servers.py; an
environment variable holds a sentinel secret that must reach no record, file or prompt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from vendor_servers import OpenAIServer

pytest.importorskip("optuna", reason="pip install 'evsys[evolve]'")
pytest.importorskip("sqlalchemy", reason="pip install 'evsys[evolve]'")
pytest.importorskip("openai", reason="pip install 'evsys[openai]'")

SECRET_ENV = "EVSYS_TEST_SECRET"
SECRET = "sentinel-5b1f0c9e-secret"
LR, RANK = "algorithm.params.learning_rate", "algorithm.params.lora_rank"
FIXED = [
    "+backend.params.landscape={}",
    "+metadata.success_metric=eval/exact_match",
    "algorithm.params.max_steps=10",
]
SPACE = {"params": {LR: "tag(log, interval(1e-5, 1e-2))"}, "space": [RANK]}
ILLEGAL_KEYS = [
    "log_store",
    "log_store.params.api_url",
    "log_store.params.log_dir",
    "data_store.kind",
    "deploy",
    "callbacks",
    "name",
    "metadata.hypothesis",
    "model.load_checkpoint_path",
    "hydra.run.dir",
    "hydra/launcher",
    "seed",
    "algorithm.params.max_steps",
]
HOSTILE_VALUES = [
    f"${{oc.env:{SECRET_ENV}}}",
    f"x${{oc.env:{SECRET_ENV},none}}y",
    "${oc.decode:'1e-4'}",
    "${algorithm.params.learning_rate}",
    "1e-4,2e-4",
    "interval(1e-5, 1e-2)",
    "choice(4, 8)",
    "range(1, 9)",
    "../../..",
    "/etc/passwd",
    "http://127.0.0.1:9/steal",
    "{kind: local}",
    "[4, 8]",
    "nan",
    "-inf",
    "１６",
    "1_6",
    "0x10",
    "",
]


def _number(dimension_low: float, dimension_high: float) -> st.SearchStrategy[str]:
    inside = st.floats(dimension_low, dimension_high).map(repr)
    outside = st.floats(allow_nan=False, allow_infinity=False).map(repr)
    return st.one_of(inside, outside)


def _values(key: str) -> st.SearchStrategy[str]:
    legal = _number(1e-5, 1e-2) if key == LR else st.integers(-4, 64).map(str)
    return st.one_of(legal, st.sampled_from(HOSTILE_VALUES), st.text(max_size=12))


legal_lines = st.one_of(
    st.floats(1e-5, 1e-2).map(lambda lr: f"{LR}={lr!r}"),
    st.integers(2, 32).map(lambda rank: f"{RANK}={rank}"),
)
lines = st.one_of(
    legal_lines,
    legal_lines,
    legal_lines,
    st.tuples(st.sampled_from(["", "", "+", "~", "++"]), st.sampled_from([LR, RANK]))
    .flatmap(lambda pk: st.tuples(st.just(pk[0] + pk[1]), _values(pk[1])))
    .map("=".join),
    st.tuples(
        st.sampled_from(["", "+", "~"]),
        st.sampled_from(ILLEGAL_KEYS),
        st.one_of(st.sampled_from(HOSTILE_VALUES), st.text(max_size=12)),
    ).map(lambda parts: f"{parts[0]}{parts[1]}={parts[2]}"),
    st.tuples(st.text(max_size=12), st.text(max_size=12)).map("=".join),
)
proposal = st.fixed_dictionaries(
    {"overrides": st.lists(lines, max_size=3)},
    optional={
        "parents": st.lists(st.sampled_from(["g0_000", "g9_999", "${oc.env:HOME}"]), max_size=2),
        "why": st.sampled_from(["step", f"${{oc.env:{SECRET_ENV}}}", "ünïcode ✓"]),
    },
)
answers = st.one_of(
    st.lists(proposal, min_size=1, max_size=6).map(lambda ps: json.dumps({"proposals": ps})),
    st.text(max_size=40),  # not the asked shape: refused as a whole
)


@pytest.fixture(scope="module")
def secret_env() -> Iterator[None]:
    previous = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = SECRET
    yield
    if previous is None:
        os.environ.pop(SECRET_ENV, None)
    else:
        os.environ[SECRET_ENV] = previous


@pytest.fixture(scope="module")
def llm_loop(secret_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The loop's parts that admit proposals, with the real LLM proposer on the OpenAI server;
    ``answer`` holds what the model says next."""
    from types import SimpleNamespace

    from evsys.evolve.context import prepare
    from evsys.evolve.proposers import make_proposer
    from evsys.evolve.settings import read_settings
    from evsys.evolve.store import EvolveStore

    answer: dict[str, str] = {"text": "{}"}
    with OpenAIServer(policy=lambda prompt, rng=None: answer["text"]) as server:
        client = {
            "kind": "openai",
            "params": {"model": "evolver", "base_url": server.base_url, "max_attempts": 1},
        }
        client["params"]["api_key_env"] = None
        sweep_settings = read_settings(
            {**SPACE, "proposer": {"kind": "llm", "params": {"client": client}}}
        )
        context = prepare(sweep_settings, FIXED, None)
        directory = tmp_path_factory.mktemp("sweep")
        store = EvolveStore.for_sweep(directory, None)
        context.store = store
        loop = SimpleNamespace(
            context=context,
            proposer=make_proposer(sweep_settings, context),
            arms=[],
            checked={},
            store=store,
            dir=directory,
            answer=answer,
            server=server,
        )
        yield loop
        store.close()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(answer=answers)
def test_hostile_answers_never_leave_the_search_space(llm_loop: Any, answer: str) -> None:
    from evsys.evolve.admission import admit, arm_name
    from evsys.evolve.confine import read_value
    from evsys.evolve.proposers.llm import IllegalAnswer, parse_answer

    loop, wanted = llm_loop, 2
    loop.answer["text"] = answer
    loop.arms.clear()  # each example on its own: no repeat of an earlier example's arm
    refused_before = len(loop.store.load_illegal())
    dropped_before = len(loop.store.load_dropped())
    names = [arm_name(0, len(loop.arms) + i) for i in range(wanted)]
    proposals = loop.proposer.propose(0, names, [])
    admitted = admit(loop, 0, proposals, wanted)
    event(f"admitted {len(admitted)}")

    dimensions = {d.key: d for d in loop.context.dimensions}
    base = loop.context.base_arm.config.model_dump(mode="json")
    for admitted_proposal, arm in admitted:
        for line in admitted_proposal.overrides:  # as the model wrote it: one dimension's value
            key, _, value = line.partition("=")
            assert key.strip() in dimensions and "${" not in line, line
            read_value(dimensions[key.strip()], value.strip())
        for line in arm.overrides[len(FIXED) :]:
            key, _, value = line.partition("=")
            assert key in dimensions, line  # no key outside the space reaches an arm
            assert read_value(dimensions[key], value) == arm.params[key]
        config = loop.checked[arm.name].config.model_dump(mode="json")
        for machinery in ("log_store", "data_store", "deploy", "callbacks", "name", "metadata"):
            assert config[machinery] == base[machinery]
        assert config["model"]["load_checkpoint_path"] == base["model"]["load_checkpoint_path"]

    # Every proposal of the answer is accounted for: admitted, refused (with why) or dropped.
    refused = loop.store.load_illegal()[refused_before:]
    dropped = loop.store.load_dropped()[dropped_before:]
    try:
        asked = len(parse_answer(answer))
    except IllegalAnswer:
        asked = 1  # refused as a whole
    assert len(admitted) + len(refused) + len(dropped) == asked
    assert all(r["problems"] and all(isinstance(p, str) for p in r["problems"]) for r in refused)
    for record in refused:
        written = record["proposal"]
        if isinstance(written, list) and any("${" in str(line) for line in written):
            assert any("interpolation" in p or "not a dimension" in p for p in record["problems"])

    # The next prompt quotes refusals as written, and no environment value reaches it or a file.
    prompt = loop.proposer.prompt(1, wanted, [])
    assert SECRET not in prompt
    assert SECRET not in json.dumps(refused) and SECRET not in json.dumps(dropped)
    assert SECRET.encode() not in (loop.dir / "study.db").read_bytes()
    assert not any(SECRET in json.dumps(r.get("messages", "")) for r in loop.server.requests)


# -- the parts ------------------------------------------------------------------------------------


def _dimensions() -> list[Any]:
    from evsys.evolve.space import CHOICE, FLOAT, INT, Dimension

    return [
        Dimension(LR, FLOAT, 1e-5, 1e-2, log=True),
        Dimension(RANK, INT, 4, 64, step=4),
        Dimension("algorithm.params.lr_schedule", CHOICE, choices=("constant", "cosine")),
        Dimension("algorithm.params.packing", CHOICE, choices=(False, True)),
        Dimension("algorithm.params.lora_dropout", CHOICE, choices=(0.0, 0.05, 0.1)),
    ]


@given(text=st.one_of(st.text(max_size=20), st.sampled_from(HOSTILE_VALUES)))
def test_a_value_is_read_as_data_inside_its_dimension_or_refused(text: str) -> None:
    from evsys.evolve.confine import read_value
    from evsys.evolve.space import CHOICE

    for dimension in _dimensions():
        try:
            value = read_value(dimension, text)
        except ValueError as exc:
            assert SECRET not in str(exc)
            continue
        assert "${" not in text
        if dimension.kind == CHOICE:
            assert value in dimension.choices
        else:
            assert dimension.low <= value <= dimension.high


@given(st.data())
def test_every_value_of_a_dimension_reads_back_as_itself(data: st.DataObject) -> None:
    from evsys.evolve.confine import confine, override_lines
    from evsys.evolve.space import CHOICE, INT

    dimensions = _dimensions()
    values = {}
    for d in dimensions:
        if d.kind == CHOICE:
            values[d.key] = data.draw(st.sampled_from(d.choices))
        elif d.kind == INT:
            values[d.key] = data.draw(st.integers(0, int((d.high - d.low) / d.step))) * 4 + 4
        else:
            values[d.key] = data.draw(st.floats(d.low, d.high))
    lines = [d.override(values[d.key]) for d in dimensions]
    confined = confine(lines, dimensions)
    assert confined.problems == [] and confined.values == values
    assert override_lines(confined, dimensions) == lines


def test_a_search_space_may_not_vary_the_machinery(secret_env: None) -> None:
    from evsys.errors import ConfigError
    from evsys.evolve.context import prepare
    from evsys.evolve.settings import read_settings

    params = {"name": "choice(a, b)", "log_store.params.log_dir": "choice(x, y)", LR: "0.1,0.2"}
    with pytest.raises(ConfigError) as refused:
        prepare(read_settings({"params": params}), FIXED, None)
    paths = {p.path for p in refused.value.problems if "machinery" in p.message}
    assert paths == {"name", "log_store.params.log_dir"}
    llm = {"kind": "llm", "params": {"client": {"kind": "openai", "params": {"model": "m"}}}}
    with pytest.raises(ConfigError) as empty:
        prepare(read_settings({"proposer": llm}), FIXED, None)
    assert "the llm proposer needs a search space" in str(empty.value.problems)


def test_an_optuna_arm_names_the_nearest_earlier_arm_as_parent_or_none() -> None:
    from types import SimpleNamespace

    from evsys.evolve.ancestry import ancestry, nearest_arm

    dimensions = _dimensions()[:3]
    base = {d.key: None for d in dimensions}
    base[RANK] = 8

    def arm(name: str, values: list[float] | None = None, **params: Any) -> Any:
        keyed = {
            key: params[key.rsplit(".", 1)[-1]] for key in base if key.rsplit(".", 1)[-1] in params
        }
        return SimpleNamespace(name=name, params=keyed, parents=[], values=values)

    far = arm("g0_000", [0.9], learning_rate=1e-5, lora_rank=64, lr_schedule="cosine")  # the best
    near = arm("g0_001", [0.1], learning_rate=2e-3, lora_rank=16, lr_schedule="constant")
    assert nearest_arm({}, [], dimensions, base) == []
    child = {LR: 1e-3, RANK: 16, "algorithm.params.lr_schedule": "constant"}
    assert nearest_arm(child, [far, near], dimensions, base) == ["g0_001"]
    made = arm("g1_002", [0.3], learning_rate=1e-3, lora_rank=16, lr_schedule="constant")
    made.parents = ["g0_001"]
    lineage = ancestry(made, {"g0_001": near}, base, ["eval/exact_match"])
    assert lineage["mutation"] == child
    (delta,) = lineage["deltas"]
    assert delta["changed"] == {LR: {"from": 2e-3, "to": 1e-3}}
    assert delta["objectives"]["eval/exact_match"] == pytest.approx(0.2)


def test_a_generation_record_carries_each_arms_lineage_by_run_id() -> None:
    from types import SimpleNamespace

    from evsys.evolve.dashboard import DashboardGenerations
    from evsys.log_stores.dashboard import arm_run_id

    sent: list[tuple[str, dict[str, Any]]] = []
    client = SimpleNamespace(update_generation=lambda gid, **fields: sent.append((gid, fields)))
    experiment = SimpleNamespace(experiment_id="exp-1", client=client)
    lineage = {"g1_002": {"generation": 1, "parent_arms": ["g0_000"], "mutation": {LR: 3e-4}}}
    DashboardGenerations(experiment, "llm").update_generation(
        sweep_dir="evo", generation=1, arms={"g1_002": "complete"}, best=[], lineage=lineage
    )
    ((_, fields),) = sent
    assert fields["summary"]["lineage"] == {arm_run_id("exp-1", "g1_002"): lineage["g1_002"]}
