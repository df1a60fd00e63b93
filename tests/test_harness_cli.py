"""``evsys eval model`` end to end in a subprocess, and ``metadata.benchmark[].models`` baselines
scored in a mock-backend run, both against a local OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, run_evsys
from openai_server import FakeChatServer

from evsys.errors import ConfigError

ARITHMETIC = REPO / "data" / "arithmetic" / "test.jsonl"


def eval_model(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return run_evsys("eval", "model", *args, cwd=cwd, module=False, env=env)


def test_eval_model_against_a_flaky_api(workdir: Path) -> None:
    with FakeChatServer(["500", "reset"]) as server:
        done = eval_model(
            "--dataset", str(ARITHMETIC),
            "--output-dir", "out",
            "--inference-kind", "openai_compatible",
            "--model-name", "fake-model",
            "--base-url", server.base_url,
            "--api-key-env", "FAKE_KEY",
            "--backoff", "0.01",
            "--limit", "5",
            cwd=workdir,
            env={"FAKE_KEY": "sk-cli-secret"},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| exact_match | 1 |" in done.stdout and "2 retried attempts" in done.stdout
    assert "sk-cli-secret" not in done.stdout + done.stderr
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer sk-cli-secret"
    records = (workdir / "out/predictions.jsonl").read_text().splitlines()
    assert len(records) == 5 and all(json.loads(r)["correct"] for r in records)
    summary = json.loads((workdir / "out/summary.json").read_text())
    assert summary["model"] == "fake-model" and summary["retry_report"]["retries"] == 2


def test_exhausted_retries_exit_1_only_with_fail_on_retries(workdir: Path) -> None:
    doomed = json.loads(ARITHMETIC.read_text().splitlines()[1])["prompt"]
    args = [
        "--dataset", str(ARITHMETIC), "--inference-kind", "openai_compatible",
        "--model-name", "m", "--backoff", "0", "--max-attempts", "2", "--limit", "4",
    ]  # fmt: skip
    with FakeChatServer(always_fail=doomed) as server:
        args += ["--base-url", server.base_url]
        lenient = eval_model(*args, "--output-dir", "a", cwd=workdir)
        strict = eval_model(*args, "--output-dir", "b", "--fail-on-retries", cwd=workdir)
    assert lenient.returncode == 0, lenient.stderr
    assert "1 calls failed after all attempts" in lenient.stdout
    assert strict.returncode == 1 and "--fail-on-retries" in strict.stderr
    for out in ("a", "b"):  # written either way
        summary = json.loads((workdir / out / "summary.json").read_text())
        assert summary["retry_report"]["failed_rows"] == [1]
        assert summary["metrics"]["exact_match"] == 0.75


def test_a_benchmark_directory_and_a_mock_checkpoint(workdir: Path) -> None:
    benchmark = REPO / "data" / "tool_selection" / "benchmark"
    done = eval_model("--dataset", str(benchmark), "--output-dir", "out", cwd=workdir)
    assert done.returncode == 0, done.stderr
    summary = json.loads((workdir / "out/summary.json").read_text())
    assert summary["n_rows"] == 40 and "exact_match/toolkit=gmail" in summary["metrics"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "missing.jsonl"], "missing.jsonl: no such file"),
        (["--dataset", "broken.jsonl"], "broken.jsonl:2: invalid JSON"),
        (["--dataset", "rows.jsonl", "--inference-kind", "opneai_compatible"], "did you mean"),
        (["--dataset", "rows.jsonl", "--aliases", "nope.json"], "nope.json: no such alias file"),
        (["--dataset", "rows.jsonl", "--max-attempts", "0"], "--max-attempts"),
        (["--dataset", "rows.jsonl", "--param", "timeout_s"], "--param: expected KEY=VALUE"),
        (["--dataset", "rows.jsonl", "--param", "timeout_s={"], "timeout_s: not a YAML value"),
    ],
)
def test_bad_input_exits_2_with_one_clear_message(
    workdir: Path, args: list[str], message: str
) -> None:
    (workdir / "rows.jsonl").write_text('{"prompt": "What is 1 + 1?", "answer": "2"}\n')
    (workdir / "broken.jsonl").write_text('{"prompt": "a", "answer": "b"}\n{"prompt": \n')
    done = eval_model(*args, "--output-dir", "out", cwd=workdir)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (workdir / "out").exists()


# -- metadata.benchmark[].models --------------------------------------------------------------


@pytest.fixture
def arithmetic_benchmark(tmp_path: Path) -> Path:
    directory = tmp_path / "arith_bench"
    directory.mkdir()
    (directory / "tasks.jsonl").write_text("".join(ARITHMETIC.read_text().splitlines(True)[:8]))
    (directory / "metadata.yaml").write_text("name: arith\n")
    return directory


def run(overrides: list[str], run_dir: Path):
    from evsys.compose.compose import compose_and_validate
    from evsys.run.runner import run_arm

    _, config = compose_and_validate(overrides)
    return run_arm(config, run_dir, overrides=overrides).record


def test_benchmark_models_are_scored_as_baselines(
    workdir: Path, arithmetic_benchmark: Path
) -> None:
    with FakeChatServer(["503"], always_fail="down-model") as server:
        models = ", ".join(
            f"{{kind: openai_compatible, name: {name}, "
            f"params: {{model: {name}-model, base_url: '{server.base_url}', backoff_s: 0}}}}"
            for name in ("fake", "down")
        )
        overrides = [
            "data=arithmetic",
            "eval=default",
            f"+metadata.benchmark=[{{path: '{arithmetic_benchmark}', models: [{models}]}}]",
        ]
        record = run(overrides, workdir / "r")
    assert record["status"] == "completed", record["error"]
    metrics = record["metrics"]
    assert metrics["test/arith/exact_match@fake"] == 1.0  # the API baseline
    assert "test/arith/exact_match" in metrics  # the trained model, on the same benchmark
    assert not any("pass@" in name for name in metrics)
    out = workdir / "r/baselines/arith@fake"
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 8
    assert json.loads((out / "summary.json").read_text())["retry_report"]["retries"] == 1
    logged = [json.loads(line) for line in (workdir / "r/metrics.jsonl").read_text().splitlines()]
    assert any(line.get("test/arith/exact_match@fake") == 1.0 for line in logged)
    # Rows pass through data.transforms, so the API sees what the trained model sees.
    assert server.requests[0]["messages"][0]["role"] == "system"

    # A model whose every call fails scores 0, and the run says why; it still completes.
    assert metrics["test/arith/exact_match@down"] == 0.0
    assert (
        "8 calls exhausted their retries" in record["extras"]["baseline_arith@down_retry_failures"]
    )
    down = json.loads((workdir / "r/baselines/arith@down/summary.json").read_text())
    assert down["retry_report"]["total_failures"] == 8
    assert {f["attempts"] for f in down["retry_report"]["failures"]} == {3}


def test_a_kind_model_string_uses_the_environment(
    workdir: Path, arithmetic_benchmark: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeChatServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
        overrides = [
            "data=arithmetic",
            "eval=default",
            f"+metadata.benchmark=[{{path: '{arithmetic_benchmark}', "
            "models: ['openai_compatible:gpt-4o-mini']}]",
        ]
        record = run(overrides, workdir / "r")
    assert record["status"] == "completed", record["error"]
    assert record["metrics"]["test/arith/exact_match@gpt-4o-mini"] == 1.0
    assert server.requests[0]["model"] == "gpt-4o-mini"
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-env"
    assert "sk-env" not in (workdir / "r/run_result.json").read_text()


@pytest.mark.parametrize(
    ("models", "tags", "message"),
    [
        ("['gpt-4o-mini']", "[test]", "expected '<inference kind>:<model>'"),
        ("['opnai_compatible:gpt-4o-mini']", "[test]", "did you mean 'openai_compatible'"),
        ("[{kind: openai_compatible, params: {modle: x}}]", "[test]", "params.modle"),
        ("['openai_compatible:x']", "[val], run_every: 5", "tag it `test`"),
    ],
)
def test_bad_benchmark_models_are_config_errors(
    arithmetic_benchmark: Path, models: str, tags: str, message: str
) -> None:
    from evsys.compose.compose import compose_and_validate

    override = (
        f"+metadata.benchmark=[{{path: '{arithmetic_benchmark}', tags: {tags}, models: {models}}}]"
    )
    with pytest.raises(ConfigError) as info:
        compose_and_validate([override])
    assert message in str(info.value) + "".join(p.path for p in info.value.problems)
