"""The evolve sweeper: generations proposed by Optuna or an LLM, on the mock backend's known
landscape (SFT's score peaks at lr 3e-4 and LoRA rank 16, see evsys.backends.mock.backend)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import doc_block, run_evsys
from vendor_servers import OpenAIServer

from evsys.evolve.ancestry import nearest_arm
from evsys.evolve.space import FLOAT, INT, Dimension

pytest.importorskip("optuna", reason="pip install 'evsys[evolve]'")
pytest.importorskip("sqlalchemy", reason="pip install 'evsys[evolve]'")

EM, COST = "eval/exact_match", "train/cost_usd"
LR = "algorithm.params.learning_rate"
EVOLVE = [
    "--multirun",
    "hydra/sweeper=evolve",
    "+backend.params.landscape={}",
    f"+metadata.success_metric={EM}",
    "algorithm.params.max_steps=10",
    "hydra.sweeper.seed=3",
    "hydra.sweep.dir=evo",
]
SPACE = [f"{LR}=tag(log, interval(1e-5, 1e-2))", "hydra.sweeper.space=[algorithm.params.lora_rank]"]


def records(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/run_result.json")}


def lineage(sweep: Path) -> dict:
    return json.loads((sweep / "lineage.json").read_text())


def test_optuna_evolution_improves_and_records_its_lineage(workdir: Path) -> None:
    done = run_evsys(
        *EVOLVE, *SPACE, "hydra.sweeper.generations=3", "hydra.sweeper.population=4", cwd=workdir
    )
    assert done.returncode == 0, done.stderr
    sweep = workdir / "evo"
    arms = records(sweep)
    assert len(arms) == 12 and {r["status"] for r in arms.values()} == {"completed"}
    tree = lineage(sweep)
    by_generation: dict[int, list[float]] = {}
    for arm in tree["arms"]:
        by_generation.setdefault(arm["generation"], []).append(arm["values"][0])
        record = arms[arm["name"]]
        assert record["metrics"][EM] == arm["values"][0]  # what the proposer was told
        assert record["lineage"]["generation"] == arm["generation"]
        assert record["lineage"]["parent_arms"] == arm["parent_arms"]
        if arm["generation"] == 0:
            assert record["config"]["parent_experiment_id"] is None
        else:  # parents come from earlier generations; the config names the first one's run
            parents = [arms[p] for p in arm["parent_arms"]]
            assert parents and all(p["lineage"]["generation"] < arm["generation"] for p in parents)
            assert record["config"]["parent_experiment_id"] == parents[0]["run_id"]
    assert sorted(by_generation) == [0, 1, 2]
    # A later arm's parent is the nearest earlier arm in the normalised space (not the best so
    # far), and its delta says what changed from it.
    dimensions = [
        Dimension(LR, FLOAT, 1e-5, 1e-2, log=True),
        Dimension("algorithm.params.lora_rank", INT, 2, 32, log=True),
    ]
    base = {d.key: None for d in dimensions}
    for arm in tree["arms"]:
        earlier = [
            SimpleNamespace(name=a["name"], params=a["mutation"])
            for a in tree["arms"]
            if a["generation"] < arm["generation"]
        ]
        assert arm["parent_arms"] == nearest_arm(arm["mutation"], earlier, dimensions, base)
        for delta, parent in zip(arm["deltas"], arm["parent_arms"], strict=True):
            before = next(a["mutation"] for a in tree["arms"] if a["name"] == parent)
            assert delta["changed"] == {
                k: {"from": before[k], "to": v}
                for k, v in arm["mutation"].items()
                if before[k] != v
            }
    shown = run_evsys("results", "evo", "--json", cwd=workdir, module=False)
    evolution = json.loads(shown.stdout)["evolution"]
    assert [a["deltas"] for a in evolution["arm_lineage"]] == [a["deltas"] for a in tree["arms"]]
    assert evolution["refused"] == [] and evolution["dropped"] == tree["dropped"]
    # The sampler learned: the last generation scores better on average than the random first,
    # and the best so far never falls.
    mean = {g: sum(v) / len(v) for g, v in by_generation.items()}
    assert mean[2] > mean[0], mean
    curve = [point["best"] for point in tree["best_so_far"]]
    assert curve == sorted(curve) and curve[-1] == max(max(v) for v in by_generation.values())

    result = json.loads((sweep / "sweep_result.json").read_text())
    assert result["best_value"] == curve[-1]
    assert result["evolution"]["proposals_illegal"] == 0
    assert (sweep / "evolution.png").read_bytes()[:4] == b"\x89PNG"
    summary = (sweep / "summary.md").read_text()
    assert "## Evolution" in summary and "![best so far](evolution.png)" in summary
    child = next(a for a in tree["arms"] if a["generation"] == 2)
    assert re.search(rf"\n  +- `{child['name']}` g2", summary)  # indented under its parent
    plan = json.loads((sweep / "sweep_plan.json").read_text())
    assert [a["name"] for a in plan["arms"]] == [a["name"] for a in tree["arms"]]
    assert plan["sweeper"].endswith("EvolveSweeper")
    with sqlite3.connect(sweep / "study.db") as db:  # the study, stored as it ran
        states = db.execute("select state, count(*) from evolve_arms group by state").fetchall()
    assert states == [("complete", 12)]


def test_nsga2_evolves_a_front_of_two_objectives(workdir: Path) -> None:
    objectives = (
        f"hydra.sweeper.objectives=[{{metric: {EM}, direction: maximize}}, "
        f"{{metric: {COST}, direction: minimize}}]"
    )
    done = run_evsys(
        *EVOLVE,
        *SPACE,
        objectives,
        "hydra.sweeper.generations=2",
        "hydra.sweeper.population=4",
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr
    sweep = workdir / "evo"
    arms = records(sweep)
    tree = lineage(sweep)
    assert [o["direction"] for o in tree["objectives"]] == ["max", "min"]
    for arm in tree["arms"]:
        metrics = arms[arm["name"]]["metrics"]
        assert arm["values"] == [metrics[EM], metrics[COST]]
    with sqlite3.connect(sweep / "study.db") as db:
        proposals = [json.loads(p) for (p,) in db.execute("select proposal from evolve_arms")]
    assert all("nsga2:generation" in p["system_attrs"] for p in proposals)  # NSGA-II proposed


def test_a_search_space_outside_the_legal_space_is_refused_before_anything_runs(
    workdir: Path,
) -> None:
    bad = [*EVOLVE, f"{LR}=interval(-1, 0.1)"]
    done = run_evsys(*bad, cwd=workdir)
    assert done.returncode == 2
    assert LR in done.stderr and "leaves the legal space" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (workdir / "evo").exists()
    planned = run_evsys("plan", *bad[1:], cwd=workdir, module=False)
    assert planned.returncode == 2 and "leaves the legal space" in planned.stderr
    # A schema-derived space is legal by construction; a field without a schema range is named.
    unknown = run_evsys(*EVOLVE, "hydra.sweeper.space=[algorithm.params.no_such]", cwd=workdir)
    assert unknown.returncode == 2 and "no_such" in unknown.stderr
    no_space = run_evsys(*EVOLVE, cwd=workdir)
    assert no_space.returncode == 2 and "needs a search space" in no_space.stderr


def test_a_failing_arm_is_fed_back_and_the_loop_goes_on(workdir: Path) -> None:
    done = run_evsys(
        *EVOLVE,
        f"{LR}=tag(log, interval(1e-4, 1e-3))",
        "backend.params.fail_at_step=choice(3, 100)",  # 100: past the last step, never fails
        "hydra.sweeper.generations=3",
        "hydra.sweeper.population=3",
        cwd=workdir,
    )
    assert done.returncode == 1, done.stderr  # an arm failed; every generation still ran
    tree = lineage(workdir / "evo")
    assert sorted({a["generation"] for a in tree["arms"]}) == [0, 1, 2]
    failed = [a for a in tree["arms"] if a["state"] == "failed"]
    assert failed and all("fail_at_step" in a["error"] for a in failed)
    assert any(a["state"] == "complete" for a in tree["arms"])
    assert "Traceback" not in done.stderr.split("mock backend failed")[0]


STOPPER = """
import os, signal

class Stop:
    def update_generation(self, *, generation, **_):
        if generation == 0:  # Ctrl-C once the first generation is recorded
            os.kill(os.getpid(), signal.SIGINT)

def tracker(sweep_dir):
    return Stop()
"""


@pytest.mark.slow
def test_resume_continues_after_the_last_complete_generation(workdir: Path) -> None:
    (workdir / "stopper.py").write_text(STOPPER)
    args = [*EVOLVE, *SPACE, "hydra.sweeper.generations=3", "hydra.sweeper.population=3"]
    first = run_evsys(*args, "hydra.sweeper.tracker=stopper:tracker", cwd=workdir)
    assert first.returncode != 0
    sweep = workdir / "evo"
    before = records(sweep)
    assert sorted(before) == ["g0_000", "g0_001", "g0_002"]

    (workdir / "stopper.py").write_text("def tracker(sweep_dir):\n    return None\n")
    resumed = run_evsys("resume", "evo", cwd=workdir, module=False)
    assert resumed.returncode == 0, resumed.stderr
    after = records(sweep)
    assert len(after) == 9  # generations 1 and 2 ran …
    assert all(after[name]["run_id"] == r["run_id"] for name, r in before.items())  # … 0 did not
    assert not (sweep / ".attempts").exists()
    assert sorted({a["generation"] for a in lineage(sweep)["arms"]}) == [0, 1, 2]
    again = run_evsys("resume", "evo", cwd=workdir, module=False)
    assert again.returncode == 0 and records(sweep) == after  # nothing left to run


def proposer_policy():
    """The model behind the OpenAI-protocol server: it reads the prompt, answers one JSON object
    with an illegal proposal (a negative learning rate) and as many legal ones as asked; in
    generation 1 its first answer is not JSON at all, its second repeats the first arm."""
    counter = iter(range(1000))

    def answer(prompt: str, rng: object = None) -> str:
        asked = re.search(r"Generation (\d+): propose (\d+) new", prompt)
        assert asked, prompt[:500]
        generation, count = int(asked.group(1)), int(asked.group(2))
        if generation == 1 and "refused as a whole" not in prompt:
            return "Sure! Here are some ideas: raise the learning rate."
        proposals = [{"overrides": [f"{LR}=-0.5"], "parents": [], "why": "bold"}]
        if generation == 1:  # g0_000's config again, from another parent: not a new arm
            proposals.append({"overrides": [f"{LR}=0.0001"], "parents": ["g0_001"], "why": "again"})
        for _ in range(count):
            lr = 1e-4 * 1.25 ** next(counter)
            proposals.append({"overrides": [f"{LR}={lr}"], "parents": ["g0_000"], "why": "step"})
        return "```json\n" + json.dumps({"proposals": proposals}) + "\n```"

    return answer


def test_llm_proposer_refuses_and_counts_illegal_proposals(workdir: Path) -> None:
    with OpenAIServer(policy=proposer_policy()) as server:
        client = (
            "{kind: openai_compatible, params: {model: evolver, base_url: "
            f"'{server.base_url}', api_key_env: null, max_attempts: 1}}}}"
        )
        done = run_evsys(
            *EVOLVE,
            f"{LR}=tag(log, interval(1e-5, 1e-2))",
            "hydra.sweeper.proposer.kind=llm",
            f"hydra.sweeper.proposer.params.client={client}",
            "hydra.sweeper.generations=3",
            "hydra.sweeper.population=2",
            cwd=workdir,
        )
        prompts = [r["messages"][-1]["content"] for r in server.requests]
    assert done.returncode == 0, done.stderr
    sweep = workdir / "evo"
    arms = records(sweep)
    assert len(arms) == 6
    assert all(r["config"]["algorithm"]["params"]["learning_rate"] > 0 for r in arms.values())
    result = json.loads((sweep / "sweep_result.json").read_text())
    # one negative learning rate per generation, one answer that was not JSON
    assert result["evolution"]["proposals_illegal"] == 4
    assert "proposals refused as illegal: 4" in (sweep / "summary.md").read_text()
    assert len(prompts) == 4  # generation 1 asked twice
    later = prompts[-1]
    assert "REFUSED" in later and "outside the search space" in later  # the feedback, with why
    assert "refused as a whole" in later
    assert "the same config as an earlier arm" in later  # not launched twice, not illegal
    assert '"metrics": {"eval/exact_match"' in later  # parents with their results
    assert '"properties"' in later  # the whole-space JSON schema
    tree = lineage(sweep)
    assert all(a["parent_arms"] == ["g0_000"] for a in tree["arms"] if a["generation"] > 0)


# -- the parts, in this process ------------------------------------------------------------------


def test_a_space_from_the_registry_schemas_follows_each_fields_bounds_and_type() -> None:
    from evsys.compose.compose import compose
    from evsys.evolve.space import CHOICE, FLOAT, INT, schema_dimensions

    resolved = compose([]).config
    fields = ["learning_rate", "lr_schedule", "packing", "lora_rank", "warmup_ratio"]
    problems: list = []
    dims = {
        d.key.rsplit(".", 1)[-1]: d
        for d in schema_dimensions([f"algorithm.params.{f}" for f in fields], resolved, problems)
    }
    assert not problems
    lr = dims["learning_rate"]  # gt=0, no upper bound: ×10 around the default 1e-4, log scale
    assert (lr.kind, lr.log) == (FLOAT, True) and 0 < lr.low < 1e-4 < lr.high <= 1e-3
    assert dims["lr_schedule"].kind == CHOICE and "cosine" in dims["lr_schedule"].choices
    assert dims["packing"].choices == (False, True)
    rank = dims["lora_rank"]  # ge=1, default 8
    assert (rank.kind, rank.low, rank.high) == (INT, 2, 32)
    warmup = dims["warmup_ratio"]  # ge=0, lt=1: the open end is not a legal value
    assert warmup.kind == FLOAT and warmup.low == 0 and warmup.high < 1

    schema_dimensions(["algorithm.params.target_modules", "algorithm.nope"], resolved, problems)
    assert [p.path for p in problems] == ["algorithm.params.target_modules", "algorithm.nope"]


@pytest.mark.parametrize(
    "answer",
    [
        "raise the learning rate",
        '{"proposal": []}',
        '{"proposals": [{"overrides": "seed=1"}]}',
        '{"proposals": [{"overrides": ["seed"]}]}',
        '{"proposals": [{"overrides": ["seed=1"], "parents": "g0_000"}]}',
        '{"proposals": [{"overrides": ["seed=1"], "extra": 1}]}',
    ],
)
def test_an_llm_answer_of_another_shape_is_refused_as_a_whole(answer: str) -> None:
    from evsys.evolve.proposers.llm import IllegalAnswer, parse_answer

    with pytest.raises(IllegalAnswer):
        parse_answer(answer)


def test_an_llm_answer_is_read_from_a_json_fence() -> None:
    from evsys.evolve.proposers.llm import parse_answer

    answer = 'Here:\n```json\n{"proposals": [{"overrides": ["seed=1"], "why": "w"}]}\n```'
    assert parse_answer(answer) == [{"overrides": ["seed=1"], "parents": [], "why": "w"}]


def test_an_experiment_file_picks_the_evolve_sweeper_and_its_search_space(workdir: Path) -> None:
    # The documented experiment file, on the mock landscape and with a budget of two arms.
    experiment = doc_block("# Evolution: `hydra/sweeper=evolve`", language="yaml")
    (workdir / "experiments").mkdir()
    (workdir / "experiments" / "evo.yaml").write_text(experiment)
    done = run_evsys(
        "--multirun",
        "experiment=evo",
        "+backend.params.landscape={}",
        "algorithm.params.max_steps=10",
        "hydra.sweeper.generations=1",
        "hydra.sweeper.population=2",
        "hydra.sweep.dir=evo",
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr
    arms = records(workdir / "evo")
    assert len(arms) == 2 and {r["status"] for r in arms.values()} == {"completed"}
    assert {r["config"]["metadata"]["success_metric"]["name"] for r in arms.values()} == {EM}
    assert [arm["generation"] for arm in lineage(workdir / "evo")["arms"]] == [0, 0]
