"""Harbor tasks scored by their own verifiers: in RL rollouts, in the pass_rate metric and in
benchmarks; payloads that cannot run are refused before anything trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, metrics_lines, run_evsys, run_in_process
from openai_server import FakeChatServer

from evsys.config import InferenceSpec
from evsys.data.types import task_row, verifier_from_dict
from evsys.errors import DataError
from evsys.registry import METRICS, VERIFIERS
from evsys.task_verifiers import RowVerifier, check_task_verifiers, parse_verdict, task_verifier
from evsys.verifiers import register_verifier_fn

ADD_TESTS = "assert add(2, 3) == 5\nassert add(-4, 4) == 0\n"
MUL_TESTS = "assert mul(2, 3) == 6\nassert mul(0, 7) == 0\n"
GOOD_ADD = "```python\ndef add(a, b):\n    return a + b\n```"
GOOD_MUL = "```python\ndef mul(a, b):\n    return a * b\n```"


def task(task_id: str, instruction: str, verifier: dict[str, Any], **metadata: Any) -> dict:
    return {
        "task_id": task_id,
        "instruction": instruction,
        "verifier": verifier,
        "metadata": metadata,
    }


def sandbox_tasks() -> list[dict[str, Any]]:
    """Two coding tasks, each with a reference solution the mock policy can learn."""
    return [
        task(
            "add",
            "Write add(a, b).",
            {"kind": "sandbox", "tests": ADD_TESTS, "timeout_s": 5},
            answer=GOOD_ADD,
            op="add",
        ),
        task(
            "mul",
            "Write mul(a, b).",
            {"kind": "sandbox", "tests": MUL_TESTS, "timeout_s": 5},
            answer=GOOD_MUL,
            op="mul",
        ),
    ]


def write_tasks(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    return path


def row_of(obj: dict[str, Any]) -> dict[str, Any]:
    from evsys.data.types import from_dict

    return task_row(from_dict(obj))


# -- in_process: the registered function ------------------------------------------------------


@pytest.mark.usefixtures("clean_registries")
def test_in_process_calls_the_registered_fn_with_expected_and_params() -> None:
    calls = []

    @register_verifier_fn("starts_with")
    def starts_with(completion: str, expected: str, prefix: str = "") -> float:
        calls.append((completion, expected, prefix))
        return float(completion.startswith(prefix + expected))

    payload = {
        "kind": "in_process",
        "fn_name": "starts_with",
        "expected": "yes",
        "params": {"prefix": "> "},
    }
    verifier = task_verifier(payload, "task t1")
    assert verifier.verify(prompt="q", completion="> yes!", target=None).reward == 1.0
    assert verifier.verify(prompt="q", completion="yes", target=None).reward == 0.0
    assert calls == [("> yes!", "yes", "> "), ("yes", "yes", "> ")]


def test_in_process_runs_a_class_verifier_against_expected() -> None:
    payload = {"kind": "in_process", "fn_name": "exact_match", "expected": "GMAIL_SEND_EMAIL"}
    result = task_verifier(payload, "t").verify(
        prompt="", completion="<answer>gmail_send_email</answer>", target=None
    )
    assert result.reward == 1.0 and result.info["fn_name"] == "exact_match"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"kind": "in_process", "fn_name": "exact_mach", "expected": "x"},
            "fn_name='exact_mach' is not a registered verifier (did you mean 'exact_match'?)",
        ),
        (
            {"kind": "in_process", "fn_name": "contains", "params": {"case_sensitiv": True}},
            "verifier.params of 'contains' are invalid: case_sensitiv",
        ),
        ({"kind": "sandbox", "tests": "  "}, "verifier.tests must hold the Python tests"),
        ({"kind": "sandbox", "tests": "pass", "timeout_s": 0}, "timeout_s=0 must be in"),
        ({"kind": "sandbox", "tests": "pass", "memory_mb": 8}, "memory_mb=8 is too small"),
        (
            {"kind": "e2b", "dockerfile": "FROM x", "test_sh": "pytest"},
            "needs an API key in E2B_API_KEY, which is not set",
        ),
        ({"kind": "llm_judge", "judge_model": "m", "rubric": "r"}, "needs a judge client"),
        ({"kind": "regex"}, "verifier.kind='regex' is not a known verifier payload"),
    ],
)
def test_payloads_that_cannot_run_are_refused(
    payload: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    with pytest.raises(DataError, match=r"^task t9: ") as info:
        task_verifier(payload, "task t9")
    assert message in str(info.value)


def test_check_names_the_row_and_the_task() -> None:
    rows = [{"prompt": "plain"}, row_of(task("t2", "x", {"kind": "in_process", "fn_name": "nope"}))]
    with pytest.raises(DataError, match=r"data row 1 \(task 't2'\): verifier.fn_name='nope'"):
        check_task_verifiers(rows, "data")


def test_the_sandbox_payload_round_trips() -> None:
    payload = {"kind": "sandbox", "tests": ADD_TESTS, "timeout_s": 2.5, "memory_mb": 128}
    from evsys.data.types import to_dict

    assert to_dict(verifier_from_dict(payload)) == payload


# -- the rows RL and eval read ----------------------------------------------------------------


def test_a_row_is_scored_by_its_own_verifier_else_the_default() -> None:
    verifier = RowVerifier(VERIFIERS.build("contains"))
    sandboxed = row_of(sandbox_tasks()[0])
    assert sandboxed["prompt"] == "Write add(a, b)." and sandboxed["id"] == "add"
    assert verifier.verify(prompt="", completion=GOOD_ADD, target=sandboxed).reward == 1.0
    wrong = GOOD_ADD.replace("a + b", "a * b")
    result = verifier.verify(prompt="", completion=wrong, target=sandboxed)
    assert result.reward == 0.0 and result.info["reason"] == "tests failed"
    # A plain row has no verifier of its own: the configured one scores it.
    assert (
        verifier.verify(prompt="", completion="it is Paris", target={"answer": "paris"}).reward
        == 1.0
    )
    with pytest.raises(DataError, match="carries no harbor verifier"):
        RowVerifier(None).verify(prompt="", completion="x", target={"id": "p1", "answer": "x"})


def test_pass_rate_scores_each_row_by_its_verifier() -> None:
    rows = [row_of(t) for t in sandbox_tasks()]
    pass_rate = METRICS.build("pass_rate")
    assert pass_rate.compute(predictions=[GOOD_ADD, GOOD_MUL], targets=rows) == 1.0
    assert pass_rate.compute(predictions=[GOOD_ADD, GOOD_ADD], targets=rows) == 0.5
    assert pass_rate.compute(predictions=[None, GOOD_MUL], targets=rows) == 0.5  # failed call
    with pytest.raises(DataError, match="carries no harbor verifier"):
        pass_rate.compute(predictions=["x"], targets=[{"prompt": "p", "answer": "x"}])


def test_jsonl_to_chat_gives_a_task_without_an_answer_its_prompt_turns() -> None:
    from evsys.registry import TRANSFORMS
    from evsys.rows import prompt_messages

    to_chat = TRANSFORMS.build("jsonl_to_chat", {"system_prompt": "Reply with code."})
    bare = task("add", "Write add(a, b).", {"kind": "sandbox", "tests": ADD_TESTS})
    pick = task("t", "Pick.", {"kind": "in_process", "fn_name": "exact_match", "expected": "A"})
    sandboxed, in_process = to_chat([row_of(bare), row_of(pick)])
    assert prompt_messages(sandboxed) == [
        {"role": "system", "content": "Reply with code."},
        {"role": "user", "content": "Write add(a, b)."},
    ]
    assert "target_assistant" not in sandboxed and sandboxed["verifier"]["kind"] == "sandbox"
    assert in_process["target_assistant"] == "<answer>A</answer>"  # it has an answer to render
    with pytest.raises(DataError, match="row 0 has no 'answer' key"):
        to_chat([{"prompt": "no answer, no verifier"}])


# -- RL on the mock backend -------------------------------------------------------------------


def rl_overrides(tasks: Path, *extra: str) -> list[str]:
    return [
        "algorithm=rl",
        "data.source_kind=jsonl",
        f"data.path={tasks}",
        "data.eval_path=null",
        "data.transforms=[]",
        "algorithm.params.batch_size=2",
        *extra,
    ]


def test_mock_rl_rewards_sandbox_tasks_by_their_tests(workdir: Path) -> None:
    tasks = write_tasks(workdir / "tasks.jsonl", sandbox_tasks())
    overrides = rl_overrides(
        tasks,
        "algorithm.params.max_steps=8",
        "algorithm.params.group_size=3",
        "algorithm.params.learning_rate=1e-4",
        "eval.metrics=[{kind: pass_rate}]",
    )
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    rewards = [
        m["train/reward_mean"] for m in metrics_lines(workdir / "r") if "train/reward_mean" in m
    ]
    assert len(rewards) == 8
    # The policy starts at 10–40% right: the tests pass its right code and fail the rest.
    assert 0.0 < rewards[0] < 1.0
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3
    assert record["metrics"]["eval/pass_rate"] > 0.0  # eval rows default to the training tasks


@pytest.mark.usefixtures("clean_registries")
def test_mock_rl_reward_comes_from_the_task_not_the_recipe_verifier(workdir: Path) -> None:
    seen = []

    @register_verifier_fn("always_half")
    def always_half(completion: str, expected: Any, weight: float = 1.0) -> float:
        seen.append((expected, weight))
        return 0.5 * weight

    tool_tasks = [
        task(
            f"t{i}",
            f"request {i}",
            {
                "kind": "in_process",
                "fn_name": "always_half",
                "expected": f"E{i}",
                "params": {"weight": 2},
            },
        )
        for i in range(3)
    ]
    tasks = write_tasks(workdir / "tasks.jsonl", tool_tasks)
    overrides = rl_overrides(
        tasks,
        "algorithm.params.max_steps=3",
        "algorithm.params.verifier.kind=format_only",
        "eval=none",
    )
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    assert record["metrics"]["train/final_reward_mean"] == 1.0  # 0.5 × weight 2, never format_only
    assert {e for e, _ in seen} <= {"E0", "E1", "E2"} and {w for _, w in seen} == {2}


def test_a_task_without_a_reference_answer_is_explained_on_mock(workdir: Path) -> None:
    bare = [task("add", "Write add(a, b).", {"kind": "sandbox", "tests": ADD_TESTS})]
    tasks = write_tasks(workdir / "tasks.jsonl", bare)
    record = run_in_process(rl_overrides(tasks, "eval=none"), workdir / "r").record
    assert record["status"] == "failed"
    assert "learns from a reference answer, and row 'add' has none" in record["error"]


@pytest.mark.parametrize(
    ("verifier", "message"),
    [
        (
            {"kind": "in_process", "fn_name": "exact_mach", "expected": "x"},
            "did you mean 'exact_match'?",
        ),
        ({"kind": "llm_judge", "judge_model": "m", "rubric": "r"}, "needs a judge client"),
    ],
)
def test_a_task_that_cannot_be_scored_fails_before_training(
    workdir: Path, verifier: dict[str, Any], message: str
) -> None:
    write_tasks(workdir / "tasks.jsonl", [task("t1", "q", verifier)])
    result = run_evsys(*rl_overrides(Path("tasks.jsonl")), "hydra.run.dir=out", cwd=workdir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "tasks.jsonl) row 0 (task 't1')" in result.stdout + result.stderr
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "out" / "checkpoints").exists()  # nothing trained


# -- benchmarks -------------------------------------------------------------------------------


def test_a_benchmark_of_sandbox_tasks_is_scored(workdir: Path) -> None:
    tasks = write_tasks(workdir / "train.jsonl", sandbox_tasks())
    write_tasks(workdir / "code_bench" / "tasks.jsonl", sandbox_tasks())
    (workdir / "code_bench" / "metadata.yaml").write_text("name: code\nbreakdown_keys: [op]\n")
    overrides = [
        *rl_overrides(
            tasks,
            "algorithm.params.max_steps=6",
            "algorithm.params.group_size=2",
            "algorithm.params.learning_rate=1e-4",
        ),
        "eval.enabled=false",
        "eval.baseline=true",
        "+metadata.benchmark=[{path: code_bench}]",
    ]
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    metrics = record["metrics"]
    # Sandbox tasks have no expected answer: pass_rate only, from the tasks' own tests.
    assert {k for k in metrics if k.startswith("test/")} == {
        "test/code/pass_rate",
        "test/code/pass_rate/op=add",
        "test/code/pass_rate/op=mul",
    }
    assert metrics["baseline/test/code/pass_rate"] == 0.0  # the untrained policy knows nothing
    assert metrics["test/code/pass_rate"] > 0.0  # the tests pass the solutions it learnt
    predictions = (workdir / "r" / "benchmarks" / "code.jsonl").read_text().splitlines()
    assert len(predictions) == 2


def test_a_harbor_benchmark_with_answers_keeps_the_eval_metrics(workdir: Path) -> None:
    bench = REPO / "data" / "tool_selection" / "benchmark"
    overrides = ["algorithm.params.max_steps=20", f"+metadata.benchmark=[{{path: '{bench}'}}]"]
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    metrics = record["metrics"]
    # The tasks' in-process verifier is exact_match on the expected slug: the same verdicts.
    assert metrics["test/tool_selection/pass_rate"] == metrics["test/tool_selection/exact_match"]
    assert metrics["test/tool_selection/pass_rate"] > 0


def test_a_benchmark_task_with_an_unknown_fn_fails_the_load(workdir: Path) -> None:
    bad = task("t1", "q", {"kind": "in_process", "fn_name": "exact_mach", "expected": "x"})
    write_tasks(workdir / "bench" / "tasks.jsonl", [bad])
    result = run_evsys("+metadata.benchmark=[{path: bench}]", "hydra.run.dir=out", cwd=workdir)
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "metadata.benchmark[0]" in output and "tasks.jsonl:1 (task 't1')" in output
    assert "did you mean 'exact_match'?" in output


# -- llm_judge: through a registered inference client -----------------------------------------


@pytest.mark.parametrize(
    ("reply", "score", "problem"),
    [
        ("Meets it. <answer>1</answer>", 1.0, None),
        ("Format: <answer>SCORE</answer>. Partly. <answer> 0.5 </answer>", 0.5, None),  # last wins
        ("<answer>0</answer>", 0.0, None),
        ("Looks fine to me.", 0.0, "no <answer>SCORE</answer>"),
        ("<answer>pass</answer>", 0.0, "is not a number"),
        ("<answer>1.5</answer>", 0.0, "outside [0, 1]"),
        ("<answer>-1</answer>", 0.0, "is not a number"),
    ],
)
def test_judge_verdicts_are_parsed_strictly(reply: str, score: float, problem: str | None) -> None:
    parsed, found = parse_verdict(reply)
    assert parsed == score
    assert found is None if problem is None else problem in found


def judged(task_id: str, rubric: str) -> dict[str, Any]:
    payload = {"kind": "llm_judge", "judge_model": "judge-1", "rubric": rubric}
    return task(task_id, f"Describe task {task_id}.", payload, group="g")


def test_a_judge_task_asks_the_judge_model_and_reads_its_score() -> None:
    # The fake endpoint answers the sum it finds in the prompt: the rubric decides the verdict.
    with FakeChatServer() as server:
        judge = InferenceSpec(
            kind="openai_compatible", params={"base_url": server.base_url, "api_key_env": None}
        )
        verifier = RowVerifier(None, judge=judge)
        passed = verifier.verify(
            prompt="Describe it.",
            completion="A fine answer.",
            target=row_of(judged("a", "What is 1 + 0?")),
        )
        unreadable = verifier.verify(
            prompt="Describe it.",
            completion="Whatever.",
            target=row_of(judged("b", "Is it polite?")),
        )
    assert passed.reward == 1.0 and passed.info["judge_model"] == "judge-1"
    assert (
        unreadable.reward == 0.0 and "no <answer>SCORE</answer>" in unreadable.info["verdict_error"]
    )
    first = server.requests[0]
    assert first["model"] == "judge-1" and first["temperature"] == 0.0
    assert "A fine answer." in first["messages"][-1]["content"]
    assert "What is 1 + 0?" in first["messages"][-1]["content"]


def test_a_benchmark_of_judge_tasks_is_scored_through_the_client(workdir: Path) -> None:
    rubrics = ["What is 1 + 0?", "What is 0 + 0?", "Is it polite?", "What is 5 + 5?"]
    write_tasks(
        workdir / "judged" / "tasks.jsonl", [judged(f"j{i}", r) for i, r in enumerate(rubrics)]
    )
    with FakeChatServer() as server:
        judge = f"{{kind: openai_compatible, params: {{base_url: '{server.base_url}', api_key_env: null}}}}"
        overrides = [
            "algorithm.params.max_steps=2",
            "eval.enabled=false",
            f"+metadata.benchmark=[{{path: judged, metrics: [{{kind: pass_rate, params: {{judge: {judge}}}}}]}}]",
        ]
        record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    # 1, 0, unreadable (0, reported), out of range (0, reported): one task in four passed.
    assert record["metrics"]["test/judged/pass_rate"] == 0.25
    assert len(server.requests) == 4 and {r["model"] for r in server.requests} == {"judge-1"}


def test_judge_tasks_without_a_judge_fail_the_benchmark_load(workdir: Path) -> None:
    write_tasks(workdir / "judged" / "tasks.jsonl", [judged("j0", "r")])
    result = run_evsys("+metadata.benchmark=[{path: judged}]", "hydra.run.dir=out", cwd=workdir)
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "tasks.jsonl:1 (task 'j0')" in output and "needs a judge client" in output
