"""An attacking model, end to end: a real evolve sweep whose LLM proposer (the real ``openai``
SDK against the OpenAI-protocol server of tests/vendor_servers.py) answers the audit's attacks and
hostile lines drawn like tests/test_evolve_confine.py's; and models that give no legal arm."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evsys
from test_evolve_confine import (
    FIXED,
    HOSTILE_VALUES,
    ILLEGAL_KEYS,
    LR,
    RANK,
    SECRET,
    SECRET_ENV,
)
from vendor_servers import OpenAIServer

pytest.importorskip("optuna", reason="pip install 'evsys[evolve]'")
pytest.importorskip("sqlalchemy", reason="pip install 'evsys[evolve]'")
pytest.importorskip("openai", reason="pip install 'evsys[openai]'")

KEY = "sentinel-dashboard-key-77ad"  # the dashboard key in EVSYS_API_KEY: sent nowhere


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
