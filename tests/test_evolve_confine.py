"""A proposal is data: the evolve sweeper's proposers may set only the declared search space.

Hostile answers (hypothesis-generated override lines mixing legal keys, the machinery's keys,
``${…}``, ``+``/``~``, ``hydra.``, sweep syntax, paths and unicode) go through the real LLM
proposer, the real ``openai`` SDK and the OpenAI-protocol server of tests/vendor_servers.py; an
environment variable holds a sentinel secret that must reach no record, file or prompt.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evsys
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from vendor_servers import OpenAIServer

pytest.importorskip("optuna", reason="pip install 'evsys[evolve]'")
pytest.importorskip("sqlalchemy", reason="pip install 'evsys[evolve]'")
pytest.importorskip("openai", reason="pip install 'evsys[openai]'")

SECRET_ENV = "EVSYS_TEST_SECRET"
SECRET = "sentinel-5b1f0c9e-secret"
KEY = "sentinel-dashboard-key-77ad"
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


class Attacker(BaseHTTPRequestHandler):
    """A URL a proposal names: it must never be called."""

    seen: list[str] = []

    def _record(self) -> None:
        self.seen.append(f"{self.command} {self.path} {self.headers.get('Authorization')}")
        self.send_response(200)
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = _record

    def log_message(self, *_: Any) -> None:
        pass


def attack_lines(attacker: str, outside: Path) -> list[str]:
    """The audit's attacks, then hostile lines drawn like the property test's (seeded)."""
    chosen = random.Random(7)
    drawn = [
        f"{chosen.choice(['', '+', '~'])}{chosen.choice(ILLEGAL_KEYS)}="
        f"{chosen.choice(HOSTILE_VALUES)}"
        for _ in range(12)
    ]
    return [
        "log_store=dashboard",
        f"log_store.params.api_url={attacker}",
        f"metadata.hypothesis=${{oc.env:{SECRET_ENV}}}",
        f"name=${{oc.env:{SECRET_ENV}}}",
        f"log_store.params.log_dir={outside}",
        "+deploy={kind: local}",
        "model.load_checkpoint_path=../../..",
        *drawn,
    ]


def attacking_policy(attacker: str, outside: Path) -> Any:
    def propose(overrides: list[str], parents: list[str] = ()) -> dict[str, Any]:
        return {"overrides": overrides, "parents": list(parents), "why": "w"}

    def answer(prompt: str, rng: object = None) -> str:
        if "Generation 0:" in prompt:
            proposals = [
                propose([f"{LR}=0.0003", *attack_lines(attacker, outside)]),
                propose([f"{LR}=0.0003", f"metadata.hypothesis=${{oc.env:{SECRET_ENV}}}"]),
                propose([f"{LR}=0.0002"]),
                propose([f"{LR}=0.0004", f"{RANK}=16"]),
                propose([f"{LR}=0.0005"]),  # past twice the 2 asked for: dropped, recorded
                propose([f"{LR}=0.0006"]),
            ]
        else:
            proposals = [
                propose([f"{LR}=0.0002"], ["g0_000"]),  # g0_000 again: dropped, recorded
                propose([f"{LR}=${{oc.env:{SECRET_ENV}}}"], ["g0_000"]),
                propose([f"{LR}=0.0003", f"{RANK}=16"], ["g0_000"]),
                propose([f"{RANK}=32"], ["g0_001", "g9_999"]),
            ]
        return json.dumps({"proposals": proposals})

    return answer


def llm_client(server: OpenAIServer) -> str:
    return (
        "hydra.sweeper.proposer.params.client={kind: openai, params: {model: evolver, "
        f"base_url: '{server.base_url}', api_key_env: null, max_attempts: 1}}}}"
    )


EVOLVE = [
    "--multirun",
    "hydra/sweeper=evolve",
    *FIXED,
    f"{LR}=tag(log, interval(1e-5, 1e-2))",
    f"hydra.sweeper.space=[{RANK}]",
    "hydra.sweeper.proposer.kind=llm",
    "hydra.sweeper.seed=3",
    "hydra.sweep.dir=evo",
]


def test_an_attacking_model_gets_only_legal_arms_and_every_refusal_on_record(
    workdir: Path,
) -> None:
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{attacker.server_address[1]}"
    outside = workdir / "outside"
    env = {SECRET_ENV: SECRET, "EVSYS_API_KEY": KEY}
    try:
        with OpenAIServer(policy=attacking_policy(url, outside)) as server:
            done = run_evsys(
                *EVOLVE,
                llm_client(server),
                "hydra.sweeper.generations=2",
                "hydra.sweeper.population=2",
                cwd=workdir,
                env=env,
            )
            prompts = [r["messages"][-1]["content"] for r in server.requests]
    finally:
        attacker.shutdown()
        attacker.server_close()
    assert done.returncode == 0, done.stderr
    assert Attacker.seen == []  # no request, so no key, went where a proposal pointed
    assert not outside.exists()
    sweep = workdir / "evo"
    for path in workdir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and KEY.encode() not in data, path
    assert len(prompts) == 2 and not any(SECRET in p for p in prompts)
    # The refusal is fed back as the model wrote it, never resolved.
    assert f"${{oc.env:{SECRET_ENV}}}" in prompts[1] and "interpolation" in prompts[1]

    arms = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/run_result.json")}
    assert sorted(arms) == ["g0_000", "g0_001", "g1_002", "g1_003"]
    for record in arms.values():
        config = record["config"]
        assert config["log_store"]["kind"] != "dashboard"
        assert config["metadata"]["hypothesis"] != SECRET and SECRET not in config["name"]
        assert config["deploy"] is None and config["model"]["load_checkpoint_path"] is None

    results = run_evsys("results", "evo", "--json", cwd=workdir, module=False, env=env)
    assert results.returncode == 0, results.stderr
    evolution = json.loads(results.stdout)["evolution"]
    assert evolution["proposals_illegal"] == 3 == len(evolution["refused"])
    attack = evolution["refused"][0]
    assert attack["proposal"][1:] == attack_lines(url, outside)  # as written
    assert len(attack["problems"]) == len(attack_lines(url, outside))
    assert any("interpolation" in p for p in attack["problems"])
    assert any("not a dimension" in p and "log_store" in p for p in attack["problems"])
    reasons = [d["reason"] for d in evolution["dropped"]]
    assert sum("past the 4 proposals" in r for r in reasons) == 2
    assert any("the same config as an earlier arm (g0_000)" in r for r in reasons)
    by_name = {a["name"]: a for a in evolution["arm_lineage"]}
    child = by_name["g1_002"]
    assert (child["generation"], child["parent_arms"]) == (1, ["g0_000"])
    assert child["mutation"] == {LR: 0.0003, RANK: 16}
    (delta,) = child["deltas"]
    assert delta["parent"] == "g0_000"
    assert delta["changed"] == {
        LR: {"from": 0.0002, "to": 0.0003},
        RANK: {"from": arms["g0_000"]["config"]["algorithm"]["params"]["lora_rank"], "to": 16},
    }
    metric = "eval/exact_match"
    gained = arms["g1_002"]["metrics"][metric] - arms["g0_000"]["metrics"][metric]
    assert delta["objectives"][metric] == pytest.approx(gained)
    assert by_name["g1_003"]["parent_arms"] == ["g0_001"]  # the unknown g9_999 is not kept
    assert by_name["g0_000"]["parent_arms"] == []  # none named: none, not "best so far"
    assert arms["g1_002"]["lineage"]["deltas"] == child["deltas"]


def nothing_legal(prompt: str, rng: object = None) -> str:
    return json.dumps({"proposals": [{"overrides": ["log_store=dashboard"], "why": "w"}]})


@pytest.mark.parametrize("model", ["unreachable", "all_illegal"])
def test_a_model_that_gives_no_legal_arm_fails_the_sweep(workdir: Path, model: str) -> None:
    args = [*EVOLVE, "hydra.sweeper.generations=2", "hydra.sweeper.population=1"]
    with OpenAIServer(policy=nothing_legal) as server:
        client = llm_client(server)
        if model == "all_illegal":
            done = run_evsys(*args, client, cwd=workdir)
    if model == "unreachable":  # the server is gone: nothing listens at its address
        done = run_evsys(*args, client, cwd=workdir)
    assert done.returncode == 1, done.stderr
    assert "exhausted" not in done.stderr and "Traceback" not in done.stderr
    expected = (
        "the proposer could not answer" if model == "unreachable" else "every answer was illegal"
    )
    assert f"evolve stops: no new legal proposal for generation 0: {expected}" in done.stderr
    lineage = json.loads((workdir / "evo" / "lineage.json").read_text())
    assert lineage["arms"] == [] and expected in lineage["stopped"]
    if model == "all_illegal":  # one refusal per round, each with why
        assert [r["proposal"] for r in lineage["refused"]] == [["log_store=dashboard"]] * 3
        assert all("not a dimension" in r["problems"][0] for r in lineage["refused"])
