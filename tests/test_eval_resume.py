"""``evsys eval model`` never loses answers it paid for: each is saved before scoring, a judge or
model that is down ends the eval with a report and the answers on disk, and the next eval into
the same directory asks the model only for what is missing. Through the real CLI, with the
task model behind the openai SDK and an LLM judge, against the protocol test servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_evsys
from openai_server import FakeChatServer
from vendor_servers import count_tokens, rubric_judge

ARITHMETIC = REPO / "data" / "arithmetic" / "test.jsonl"
N_TASKS = 6
PRICE = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0}


def judge_tasks(path: Path, with_answers: bool = False) -> list[dict[str, Any]]:
    """Arithmetic questions as harbor llm_judge tasks, judged by the rubric "contains: <sum>";
    no expected answer unless ``with_answers``."""
    tasks = []
    for line in ARITHMETIC.read_text().splitlines()[:N_TASKS]:
        row = json.loads(line)
        task = {
            "task_id": row["id"],
            "instruction": row["prompt"],
            "verifier": {
                "kind": "llm_judge",
                "judge_model": "judge-1",
                "rubric": f"contains: {row['answer']}",
            },
        }
        if with_answers:
            task["metadata"] = {"answer": row["answer"]}
        tasks.append(task)
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    return tasks


def eval_judged(workdir: Path, model: FakeChatServer, judge: FakeChatServer, *extra: str):
    metric = {
        "kind": "pass_rate",
        "params": {
            "judge": {
                "kind": "openai",
                "params": {
                    "base_url": judge.base_url,
                    "api_key_env": None,
                    "max_attempts": 2,
                    "backoff_s": 0,
                    "price": PRICE,
                },
            }
        },
    }
    return run_evsys(
        "eval", "model",
        "--dataset", "tasks.jsonl",
        "--output-dir", "out",
        "--inference-kind", "openai",
        "--model-name", "model-1",
        "--base-url", model.base_url,
        "--api-key-env", "MODEL_KEY",
        "--backoff", "0",
        "--batch-size", "2",
        "--metric", json.dumps(metric),
        *extra,
        cwd=workdir,
        module=False,
        env={"MODEL_KEY": "sk-model"},
    )  # fmt: skip


def asked(server: FakeChatServer, model: str) -> list[dict[str, Any]]:
    return [r for r in server.requests if r.get("model") == model]


def saved_answers(out: Path) -> list[dict[str, Any]]:
    lines = (out / "generations.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[1:]]


def test_a_judge_that_fails_mid_run_keeps_the_answers_and_resume_rejudges_them(
    workdir: Path,
) -> None:
    tasks = judge_tasks(workdir / "tasks.jsonl")
    # The judge answers the first tasks, then returns 500 on the fourth, every time.
    with (
        FakeChatServer() as model,
        FakeChatServer(policy=rubric_judge, always_fail=tasks[3]["instruction"]) as judge,
    ):
        failed = eval_judged(workdir, model, judge)
        paid = len(asked(model, "model-1"))
        judged_before = len(asked(judge, "judge-1"))
        summarized = (workdir / "out/summary.json").exists()
        judge.always_fail = None  # the judge is back
        resumed = eval_judged(workdir, model, judge, "--resume")

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    assert "scoring failed" in failed.stderr and "500" in failed.stderr
    assert f"judging task {tasks[3]['task_id']!r}" in failed.stderr
    assert f"the {N_TASKS} answers are saved in out/generations.jsonl" in failed.stderr
    assert not summarized  # no summary of an eval that did not end
    assert paid == N_TASKS and judged_before >= 4  # the fourth verdict was asked (and failed)

    # Every answer was on disk before the judge was asked, flushed line by line.
    answers = saved_answers(workdir / "out")
    assert sorted(a["index"] for a in answers) == list(range(N_TASKS))
    assert {a["id"] for a in answers} == {t["task_id"] for t in tasks}
    assert all(a["completion"].startswith("<answer>") for a in answers)
    assert "sk-model" not in (workdir / "out/generations.jsonl").read_text()

    # The resumed eval asked the model nothing and the judge every verdict again.
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(asked(model, "model-1")) == paid
    assert len(asked(judge, "judge-1")) == judged_before + N_TASKS
    summary = json.loads((workdir / "out/summary.json").read_text())
    assert summary["reused"] == summary["answered"] == N_TASKS
    metrics = summary["metrics"]
    assert metrics["pass_rate"] == 1.0
    assert not any(name.startswith("pass@") for name in metrics)  # no expected answers
    # The judge's spend, tokens in included; the model was not asked, so it spent nothing.
    sent = [r for r in asked(judge, "judge-1")][-N_TASKS:]
    judge_in = sum(count_tokens(r["messages"][-1]["content"]) for r in sent)
    assert metrics["judge/tokens_in"] == judge_in
    assert metrics["judge/cost_usd"] == pytest.approx((judge_in + 2 * 7 * N_TASKS) / 1e6)
    assert "cost_usd" not in metrics
    assert "answers reused from an earlier eval: 6" in resumed.stdout
    # Per row: its own verdict, under its own id.
    lines = (workdir / "out/predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for record, task in zip(records, tasks, strict=True):
        assert record["id"] == task["task_id"] and record["target"] is None
        assert record["verdicts"]["pass_rate"]["reward"] == 1.0


def test_the_judge_sees_a_reference_answer_only_where_a_task_has_one(workdir: Path) -> None:
    for with_answers in (False, True):
        judge_tasks(workdir / "tasks.jsonl", with_answers=with_answers)
        with FakeChatServer() as model, FakeChatServer(policy=rubric_judge) as judge:
            out = f"out-{with_answers}"
            done = eval_judged(workdir, model, judge, "--output-dir", out)
        assert done.returncode == 0, done.stdout + done.stderr
        shown = [r["messages"][-1]["content"] for r in asked(judge, "judge-1")]
        assert len(shown) == N_TASKS
        assert all(("reference answer" in text) == with_answers for text in shown)
        metrics = json.loads((workdir / out / "summary.json").read_text())["metrics"]
        assert metrics["pass_rate"] == 1.0
        assert ("pass@1" in metrics) == with_answers


def test_a_model_that_fails_mid_run_is_asked_only_for_the_missing_answers(workdir: Path) -> None:
    doomed = [json.loads(line)["prompt"] for line in ARITHMETIC.read_text().splitlines()[:8]][5]
    args = [
        "--dataset", str(ARITHMETIC), "--output-dir", "out", "--limit", "8",
        "--inference-kind", "openai", "--model-name", "model-1", "--api-key-env", "MODEL_KEY",
        "--backoff", "0", "--max-attempts", "2",
    ]  # fmt: skip
    env = {"MODEL_KEY": "sk-model"}
    summary = workdir / "out/summary.json"
    with FakeChatServer(always_fail=doomed) as server:
        args += ["--base-url", server.base_url]
        first = run_evsys("eval", "model", *args, cwd=workdir, module=False, env=env)
        before, first_summary = len(server.requests), json.loads(summary.read_text())
        server.always_fail = None
        second = run_evsys("eval", "model", *args, cwd=workdir, module=False, env=env)
        after, second_summary = len(server.requests), json.loads(summary.read_text())
        third = run_evsys("eval", "model", *args, cwd=workdir, module=False, env=env)
    assert first.returncode == 0, first.stderr
    assert first_summary["answered"] == 7 and first_summary["retry_report"]["failed_rows"] == [5]
    assert before == 7 + 2  # seven answered, the doomed one tried twice
    assert second.returncode == 0, second.stderr
    assert after - before == 1  # only the missing answer was asked for
    assert second_summary["reused"] == 7 and second_summary["metrics"]["exact_match"] == 1.0
    assert third.returncode == 0 and len(server.requests) == after  # nothing left to ask
    assert len(saved_answers(workdir / "out")) == 8


def test_an_eval_whose_every_call_failed_exits_1_saying_so(workdir: Path) -> None:
    with FakeChatServer(always_fail="model-1") as server:
        done = run_evsys(
            "eval", "model",
            "--dataset", str(ARITHMETIC), "--output-dir", "out", "--limit", "3",
            "--inference-kind", "openai", "--model-name", "model-1", "--api-key-env", "K",
            "--base-url", server.base_url, "--backoff", "0", "--max-attempts", "2",
            cwd=workdir, module=False, env={"K": "sk"},
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "every one of the 3 calls to model-1 failed" in done.stderr
    assert "500" in done.stderr and "Traceback" not in done.stderr
    assert len(server.requests) == 6
    summary = json.loads((workdir / "out/summary.json").read_text())
    assert summary["answered"] == 0 and summary["retry_report"]["total_failures"] == 3


def test_saved_answers_of_another_model_are_refused_not_reused(workdir: Path) -> None:
    args = ["--dataset", str(ARITHMETIC), "--output-dir", "out", "--limit", "3"]
    with FakeChatServer() as server:
        api = ["--inference-kind", "openai_compatible", "--base-url", server.base_url]
        first = run_evsys(
            "eval", "model", *args, *api, "--model-name", "a", cwd=workdir, module=False
        )
        other = run_evsys(
            "eval", "model", *args, *api, "--model-name", "b", cwd=workdir, module=False
        )
    assert first.returncode == 0, first.stderr
    assert other.returncode == 2, other.stdout + other.stderr
    assert "holds answers of another eval" in other.stderr and "model_name='a'" in other.stderr
    assert "Traceback" not in other.stderr
    assert len(server.requests) == 3  # the second eval asked nothing


def test_resume_without_saved_answers_is_bad_input(workdir: Path) -> None:
    done = run_evsys(
        "eval", "model", "--dataset", str(ARITHMETIC), "--output-dir", "out", "--resume",
        cwd=workdir, module=False,
    )  # fmt: skip
    assert done.returncode == 2 and "no saved answers to resume from" in done.stderr
    assert not (workdir / "out").exists()


def test_a_row_without_an_answer_that_a_metric_needs_is_refused_before_any_call(
    workdir: Path,
) -> None:
    judge_tasks(workdir / "tasks.jsonl")
    with FakeChatServer() as server:
        done = run_evsys(
            "eval", "model", "--dataset", "tasks.jsonl", "--output-dir", "out",
            "--inference-kind", "openai_compatible", "--model-name", "m",
            "--base-url", server.base_url,
            cwd=workdir, module=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "has no expected answer, which metric 'exact_match' needs" in done.stderr
    assert server.requests == [] and not (workdir / "out").exists()


def test_a_model_that_goes_down_mid_run_stops_the_eval_and_resume_asks_only_the_rest(
    workdir: Path,
) -> None:
    args = [
        "--dataset", str(ARITHMETIC), "--output-dir", "out", "--limit", "12",
        "--inference-kind", "openai", "--model-name", "model-1", "--api-key-env", "MODEL_KEY",
        "--backoff", "0", "--max-attempts", "2", "--batch-size", "1", "--give-up-after", "3",
    ]  # fmt: skip
    env = {"MODEL_KEY": "sk-model"}
    with FakeChatServer() as server:
        server.failures = [None] * 4 + ["500"] * 100  # None: answered; then the model is down
        args += ["--base-url", server.base_url]
        down = run_evsys("eval", "model", *args, cwd=workdir, module=False, env=env)
        before, kept = len(server.requests), saved_answers(workdir / "out")
        server.failures = []
        back = run_evsys("eval", "model", *args, cwd=workdir, module=False, env=env)
        after = len(server.requests)
    assert down.returncode == 1, down.stdout + down.stderr
    assert "Traceback" not in down.stderr
    assert "the model looks down: 3 calls in a row failed" in down.stderr
    assert "the 4 answers are saved in out/generations.jsonl" in down.stderr
    assert before == 4 + 3 * 2  # four answers, three calls of two attempts, then no more calls
    assert sorted(a["index"] for a in kept) == [0, 1, 2, 3]
    assert back.returncode == 0, back.stdout + back.stderr
    assert after - before == 12 - 4  # only the rows without an answer
    summary = json.loads((workdir / "out/summary.json").read_text())
    assert summary["reused"] == 4 and summary["metrics"]["exact_match"] == 1.0
