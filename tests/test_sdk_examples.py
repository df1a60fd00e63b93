"""The reference's Python code blocks, run as written against evsys_sdk on the mock backend.

The blocks are files in tests/reference_examples/ (each file's header says where it comes from
and what, if anything, was filled in). Also: the run context the reference's algorithms read
(``ctx.output_dir``, ``ctx.extras``), the reference's Experiment injectables, and plugins declared
under the reference's entry-point groups.
"""

from __future__ import annotations

import dataclasses
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import install_plugin
from dashboard_process import ServiceProcess, new_key
from dashboard_server import DATABASES, fresh_database

import evsys_sdk
from evsys.run.reference_injectables import (
    adapt_inference_factory,
    adapt_train_fn,
    is_reference_factory,
)
from evsys_sdk import RunConfig, RunContext, RunResult

EXAMPLES = Path(__file__).parent / "reference_examples"
# Beside, not among, the YAML examples every test of the format runs: it needs the plugin.
PLUGIN_CONFIG = EXAMPLES / "plugin" / "cosine_toy.yaml"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(workdir: Path) -> Path:
    """A researcher's project: the bundled tool-selection rows as data/train.jsonl."""
    (workdir / "data").mkdir()
    shutil.copy(REPO / "data" / "tool_selection" / "train.jsonl", workdir / "data" / "train.jsonl")
    (workdir / "experiments").mkdir()
    return workdir


def run_example(name: str) -> dict[str, Any]:
    return runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def records(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("run_result.json"))]


# -- the quickstart --------------------------------------------------------------------------------


def test_the_quickstart_loop_prints_each_run(project: Path, capsys) -> None:
    shutil.copy(EXAMPLES / "minimal.yaml", project / "config.yaml")
    namespace = run_example("quickstart.py")
    (result,) = namespace["results"]
    assert isinstance(result, RunResult)
    assert result.status == "completed", result.error
    assert 0.0 <= result.metrics["eval/exact_match"] <= 1.0
    (record,) = records(project / "outputs")
    assert result.run_id == record["run_id"] and result.metrics == record["metrics"]
    # The last line: progress bars may come before it.
    assert capsys.readouterr().out.endswith(f"\n{result.run_id} completed {result.metrics}\n")


def test_the_quickstart_on_a_matrix_returns_every_arm(project: Path, capsys) -> None:
    text = (EXAMPLES / "matrix.yaml").read_text().replace("[1, 8, 32]", "[1, 8]")
    (project / "config.yaml").write_text(text)
    results = run_example("quickstart.py")["results"]
    assert [r.extras["name"] for r in results] == [
        "sweep__rank1__lr0p0001",
        "sweep__rank1__lr5e-05",
        "sweep__rank8__lr0p0001",
        "sweep__rank8__lr5e-05",
    ]
    assert {r.status for r in results} == {"completed"}
    printed = [line for line in capsys.readouterr().out.splitlines() if " completed {" in line]
    assert printed == [f"{r.run_id} completed {r.metrics}" for r in results]


def test_a_failed_run_is_a_failed_result_not_an_exception(project: Path, clean_registries) -> None:
    @evsys_sdk.register_algorithm("explodes")
    class Explodes:
        def train(self, ctx: RunContext) -> RunResult:
            raise RuntimeError("boom")

    config = evsys_sdk.load_yaml(PLUGIN_CONFIG)
    config.run["algorithm"] = {"kind": "explodes"}
    (result,) = evsys_sdk.run_experiment(config, project / "run")
    assert result.status == "failed" and "boom" in result.error


# -- the plugin and the run context ----------------------------------------------------------------


def test_the_cosine_toy_plugin_runs_from_yaml(project: Path, clean_registries) -> None:
    run_example("cosine_toy.py")
    assert "cosine_toy" in evsys_sdk.list_algorithms()
    assert evsys_sdk.schema_for("algorithm", "cosine_toy")["properties"]["steps"]["default"] == 100
    (result,) = evsys_sdk.run_experiment(PLUGIN_CONFIG, project / "run")
    assert result.status == "completed", result.error
    assert result.metrics["final_loss"] == 1 / 200
    assert result.artifacts["final_checkpoint"] == f"{project / 'run'}/final.txt"
    losses = [
        json.loads(line)
        for line in (project / "run" / "metrics.jsonl").read_text().splitlines()
        if "loss" in line
    ]
    assert len(losses) == 200


def test_the_run_context_carries_what_the_reference_fills(project: Path, clean_registries) -> None:
    seen: list[RunContext] = []

    @evsys_sdk.register_algorithm("peek")
    class Peek:
        def train(self, ctx: RunContext) -> RunResult:
            seen.append(ctx)
            return RunResult(run_id=ctx.run_id, status="completed")

    config = evsys_sdk.load_yaml(PLUGIN_CONFIG)
    config.run.update(algorithm={"kind": "peek"}, tags=["a", "b"])
    evsys_sdk.run_experiment(config, project / "run")
    (ctx,) = seen
    assert ctx.output_dir == ctx.run_dir == project / "run"
    rows = ctx.extras["train_rows"]
    n_rows = len((project / "data" / "train.jsonl").read_text().splitlines())
    assert rows is ctx.train_rows and ctx.extras["n_train_rows"] == len(rows) == n_rows
    assert all("messages" in row for row in rows)  # after the transforms
    assert ctx.extras["backend_handles"] is ctx.handles
    assert ctx.extras["model_name"] == "evsys/tiny-llama"
    assert ctx.extras["tags"] == ["a", "b"]


def test_a_phase_context_has_its_own_rows_and_leaves_its_parents(tmp_path: Path) -> None:
    """Chained recipes (combo, sdft, continual stages) replace the context per phase."""
    parent = RunContext(
        run_id="r",
        run_dir=tmp_path,
        config=_Config(),  # the context reads only model.name and tags
        data_store=None,
        log_store=None,
        backend=None,
        handles={"model": 1},
        train_rows=[{"a": 1}],
        extras={"mine": True},
    )
    phase = dataclasses.replace(parent, train_rows=[{"b": 2}, {"c": 3}], run_dir=tmp_path / "p")
    assert phase.extras["train_rows"] == [{"b": 2}, {"c": 3}] and phase.extras["n_train_rows"] == 2
    assert parent.extras["train_rows"] == [{"a": 1}] and parent.extras["n_train_rows"] == 1
    assert phase.extras["mine"] and phase.output_dir == tmp_path / "p"
    assert phase.extras["backend_handles"] is parent.handles


@dataclasses.dataclass
class _Model:
    name: str = "base"


@dataclasses.dataclass
class _Config:
    model: _Model = dataclasses.field(default_factory=_Model)
    tags: list[str] = dataclasses.field(default_factory=list)


# -- Experiment ------------------------------------------------------------------------------------


def test_the_experiment_example_runs_with_the_projects_own_code(project: Path) -> None:
    (project / "src").mkdir()
    (project / "src" / "__init__.py").write_text(
        "from evsys_sdk import register_transform\n\n\n"
        '@register_transform("shout")\n'
        "class Shout:\n"
        "    def __call__(self, rows):\n"
        '        return [{**row, "prompt": row["prompt"].upper()} for row in rows]\n'
    )
    text = (EXAMPLES / "minimal.yaml").read_text()
    (project / "config.yaml").write_text(
        text.replace("transforms:\n", "transforms:\n      - { kind: shout }\n")
    )
    sys.path.insert(0, str(project))
    try:
        from evsys.registry import TRANSFORMS

        saved = TRANSFORMS.snapshot()
        run_example("experiment_run.py")
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("src", None)
        TRANSFORMS.restore(saved)
    (record,) = records(project / "outputs")
    assert record["status"] == "completed", record["error"]
    assert "eval/exact_match" in record["metrics"]
    # Eval falls back to the training rows: the project's transform shouted every prompt.
    lines = (Path(record["run_dir"]) / "predictions.jsonl").read_text().splitlines()
    prompts = [json.loads(line)["prompt"][-1]["content"] for line in lines]
    assert prompts and all(prompt == prompt.upper() for prompt in prompts)


class Constant:
    def __init__(self, text: str):
        self.text = text

    def generate(self, *, prompt, max_tokens, temperature, stop=None) -> str:
        return self.text


def test_experiment_takes_the_references_injectables(project: Path) -> None:
    trained, built = [], []

    def train_fn(cfg) -> list[RunResult]:
        trained.append(cfg.name)
        return [RunResult(run_id=cfg.name, status="completed", artifacts={"final_checkpoint": "c"})]

    def inference_factory(result: RunResult, run_config: RunConfig):
        built.append((result.run_id, result.artifacts, run_config.model.name))
        return Constant("<answer>nothing</answer>")

    experiment = evsys_sdk.Experiment.from_yaml(
        EXAMPLES / "minimal.yaml", train_fn=train_fn, inference_factory=inference_factory
    )
    result = experiment.run(project / "run")
    (arm,) = result.arms
    assert arm.status == "completed", arm.error
    assert trained == ["r0"]
    assert built == [("r0", {"final_checkpoint": "c"}, "Qwen/Qwen3-4B")]
    assert arm.metrics["eval/exact_match"] == 0.0


def test_a_reference_train_fn_with_no_result_for_the_arm_fails_only_the_arm(project: Path) -> None:
    def train_fn(cfg):
        return [RunResult(run_id="x", status="completed"), RunResult(run_id="y", status="failed")]

    result = evsys_sdk.Experiment.from_yaml(EXAMPLES / "minimal.yaml", train_fn=train_fn).run(
        project / "run"
    )
    (arm,) = result.arms
    assert arm.status == "failed" and "none with run_id 'r0'" in arm.error


def _evsys_factory(config, checkpoint): ...
def _annotated_first(r: RunResult, c): ...
def _annotated_second(a, b: RunConfig): ...
def _named(result, cfg): ...
def _named_second(c, run_cfg): ...
def _with_default(config, checkpoint, extra=1): ...


@pytest.mark.parametrize(
    ("factory", "reference"),
    [
        (_evsys_factory, False),
        (lambda config, checkpoint: None, False),
        (lambda a, b: None, False),
        (_with_default, False),
        (_annotated_first, True),
        (_annotated_second, True),
        (_named, True),
        (_named_second, True),
        (len, False),
    ],
)
def test_which_inference_factories_are_the_references(factory, reference: bool) -> None:
    assert is_reference_factory(factory) is reference
    adapted = adapt_inference_factory(factory)
    assert (adapted is factory) is (not reference)


def test_an_evsys_train_fn_is_left_as_it_is() -> None:
    def train(config, run_dir): ...

    assert adapt_train_fn(train) is train and adapt_train_fn(None) is None
    adapted = adapt_train_fn(lambda cfg: RunResult(run_id="z", status="completed"))
    assert adapted(_Config(), Path(".")).run_id == "z"


# -- entry points and the dashboard ----------------------------------------------------------------

PLUGIN = """
from evsys_sdk import RunResult


class SdkAlgo:
    def train(self, ctx):
        return RunResult(run_id=ctx.run_id, status="completed", metrics={"sdk/ok": 1.0})
"""


def test_plugins_under_the_references_entry_point_groups_are_found(
    project: Path, tmp_path: Path
) -> None:
    site = install_plugin(
        tmp_path / "site",
        "sdk_plugin",
        PLUGIN,
        {"evsys_sdk.algorithms": {"sdk_algo": "sdk_plugin:SdkAlgo"}},
    )
    config = PLUGIN_CONFIG.read_text().replace("cosine_toy", "sdk_algo")
    config = config.replace(", params: { steps: 200 }", "")
    (project / "config.yaml").write_text(config)
    code = (
        "import evsys_sdk\n"
        "print(evsys_sdk.list_algorithms())\n"
        "print([r.metrics for r in evsys_sdk.run_experiment('config.yaml', 'run')])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    names, metrics = done.stdout.splitlines()
    assert "sdk_algo" in names
    assert "'sdk/ok': 1.0" in metrics


def test_the_dashboard_example_writes_its_mirror_offline(tmp_path: Path, monkeypatch) -> None:
    from evsys.tracking.mirror import find_segments, read_segment

    monkeypatch.setenv("EVSYS_OFFLINE", "true")
    monkeypatch.setenv("EVSYS_LOG_DIR", str(tmp_path / "mirror"))
    namespace = run_example("dashboard_client.py")
    namespace["client"].close()
    writes = [w for p in find_segments(tmp_path / "mirror") for _, w in read_segment(p).writes]
    ops = [w["op"] for w in writes]
    assert ops[:2] == ["experiment.create", "run.create"]
    steps = sum(len(w["data"]["steps"]) for w in writes if w["op"] == "run.steps")
    assert steps == 1000
    assert "eval_run.create" in ops
    ending = [w["data"] for w in writes if w["op"] == "experiment.update"]
    assert {"id": namespace["run"].experiment_id, "conclusion": "rank-8 LoRA wins"} in ending


@pytest.mark.parametrize("database", DATABASES)
def test_the_dashboard_example_reaches_the_service(
    database: str, tmp_path: Path, monkeypatch
) -> None:
    """The example as written, its client configured by the environment only."""
    pytest.importorskip("fastapi", reason="the dashboard extra: pip install 'evsys[dashboard]'")
    monkeypatch.chdir(tmp_path)
    with fresh_database(database, tmp_path) as db_url:
        key = new_key(db_url)
        with ServiceProcess(db_url, tmp_path / "store") as process:
            monkeypatch.setenv("EVSYS_API_URL", process.url)
            monkeypatch.setenv("EVSYS_API_KEY", key)
            monkeypatch.setenv("EVSYS_LOG_DIR", str(tmp_path / "mirror"))
            monkeypatch.delenv("EVSYS_OFFLINE", raising=False)
            namespace = run_example("dashboard_client.py")
            client, run = namespace["client"], namespace["run"]
            assert client.close(timeout=30)
            with evsys_sdk.DashboardClient(process.url, key, log_dir=tmp_path / "r") as reader:
                assert reader.get_run(run.run_id)["status"] == "completed"
                experiment = reader.get_experiment(run.experiment_id)
                assert experiment["conclusion"] == "rank-8 LoRA wins"
                assert experiment["best_score"] == 0.83
                steps = reader.get_run_steps(run.run_id)
                assert len(steps) == 1000 and steps[-1]["value"] == 1 / 1000


def test_the_readme_porting_example_runs(project: Path, capsys) -> None:
    from conftest import doc_block

    shutil.copy(EXAMPLES / "minimal.yaml", project / "config.yaml")
    exec(compile(doc_block("## Porting from evsys-sdk"), "docs/reference-yaml.md", "exec"), {})
    out = capsys.readouterr().out
    assert " completed {" in out
    assert "unknown algorithm 'dpo'; known keys: agent_rl" in out
