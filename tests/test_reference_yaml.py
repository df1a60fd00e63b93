"""The reference's single-YAML format runs unchanged through evsys's Hydra machinery.

Every YAML example of ../shared/reference is in tests/reference_examples/ (each file's header says
where it comes from and what was adapted: only what needs the network or the dashboard). Each is
validated, planned, run on the mock backend, and migrated to an experiment file whose arms have
the same names and config hashes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_evsys
from hypothesis import given, settings
from hypothesis import strategies as st

from evsys import ConfigError, Experiment, load_yaml, run_experiment, validate_yaml
from evsys.reference_yaml import dump_yaml, migrate, plan, translate

EXAMPLES = Path(__file__).parent / "reference_examples"
REPO = Path(__file__).resolve().parent.parent
RUNNABLE = sorted(p.stem for p in EXAMPLES.glob("*.yaml") if p.stem != "dataset_by_id")


@pytest.fixture
def project(workdir: Path) -> Path:
    """A researcher's project holding the files the examples name: training rows and benchmarks
    (copies of the bundled ones, each benchmark named after its directory), and experiments/."""
    bundled = REPO / "data"
    data = workdir / "data"
    data.mkdir()
    shutil.copy(bundled / "tool_selection" / "train.jsonl", data / "train.jsonl")
    shutil.copy(bundled / "arithmetic" / "train.jsonl", data / "arithmetic.jsonl")
    rows = (bundled / "tool_selection" / "train.jsonl").read_text()
    (data / "slugs.jsonl").write_text(rows.replace('"answer":', '"tool_slug":'))  # reference rows
    for kind, name in [
        ("benchmark", n) for n in ("composio_eval_v2", "full_test", "tool_bench")
    ] + [("validation", "val_set")]:
        target = data / kind / name
        shutil.copytree(bundled / "tool_selection" / kind, target)
        (target / "metadata.yaml").write_text(f"name: {name}\nbreakdown_keys: [toolkit]\n")
    # Before anything composes: the config search path is read once per working directory.
    (workdir / "experiments").mkdir()
    return workdir


def arms_of(arms) -> list[tuple[str, str | None]]:
    return [(arm.name, arm.config_hash) for arm in arms]


@pytest.mark.parametrize("example", RUNNABLE)
def test_every_example_validates_and_its_migration_plans_the_same_arms(
    project: Path, example: str
) -> None:
    path = EXAMPLES / f"{example}.yaml"
    assert validate_yaml(path, deep=True) == []
    planned = plan(path)
    assert planned and all(arm.config_hash for arm in planned)

    (project / "experiments" / f"{example}.yaml").write_text(migrate(path))
    translation = translate(load_yaml(path))
    migrated = Experiment.from_file(example, multirun=translation.multirun).plan()
    assert not [arm.problems for arm in migrated if arm.problems]
    assert arms_of(migrated) == arms_of(planned)


def test_matrix_expands_into_the_reference_arms(project: Path) -> None:
    arms = plan(EXAMPLES / "matrix.yaml")
    ranks, rates = (1, 8, 32), ("0p0001", "5e-05")
    assert [a.name for a in arms] == [f"sweep__rank{r}__lr{lr}" for r in ranks for lr in rates]
    params = [a.config.algorithm.params for a in arms]
    assert [(p["lora_rank"], p["learning_rate"]) for p in params] == [
        (r, lr) for r in ranks for lr in (1e-4, 5e-5)
    ]
    assert {a.config.model.name for a in arms} == {"Qwen/Qwen3-4B"}
    assert len({a.config_hash for a in arms}) == 6


def test_default_names_follow_the_reference(project: Path) -> None:
    config = load_yaml(EXAMPLES / "matrix.yaml")
    config.matrix.name_template = None
    names = [arm.name for arm in plan(config)]
    assert names[:2] == [
        "sweep__lora_rank1__learning_rate0p0001",
        "sweep__lora_rank1__learning_rate5e-05",
    ]


def test_a_run_takes_the_schema_defaults_not_presets(project: Path) -> None:
    """What the file leaves out is the schema's default: not base.yaml's data, eval or model."""
    (arm,) = plan(EXAMPLES / "minimal.yaml")
    config = arm.config
    assert config.data.path == "data/train.jsonl" and config.data.eval_path is None
    assert config.data.transforms[0].kind == "jsonl_to_chat"
    assert [m.kind for m in config.eval.metrics] == ["exact_match"]
    assert config.eval.max_tokens == 256 and config.eval.inference.kind == "mock"
    assert config.algorithm.params["learning_rate"] == 1e-5
    assert config.name == "r0"


def test_runs_repeats_stores_and_free_form_metadata(project: Path) -> None:
    arms = plan(EXAMPLES / "runs.yaml")
    assert [a.name for a in arms] == ["sft__seed7", "sft__seed8", "rl__seed7", "rl__seed8"]
    assert [a.config.seed for a in arms] == [7, 8, 7, 8]
    assert [a.config.algorithm.kind for a in arms] == ["sft", "sft", "rl", "rl"]  # mock_sft: sft
    assert len({a.group_id for a in arms}) == 2  # the seeds of one run are one group
    config = arms[2].config
    assert config.tags == ["rl"] and config.parent_experiment_id == "exp-0041"
    assert config.metadata.notes == {"budget": {"usd": 5}, "client": "research-bot"}
    assert config.metadata.success_metric.name == "eval/exact_match"
    assert config.data_store.kind == "local" and config.log_store.kind == "jsonl"
    assert config.description.startswith("one SFT run")


def test_overrides_after_the_file_apply_last_and_sweeps_name_the_arms(project: Path) -> None:
    arms = plan(EXAMPLES / "runs.yaml", ["eval.n_samples=5,6", "algorithm.params.max_steps=2"])
    assert [a.name for a in arms][:2] == ["sft__seed7__n_samples5", "sft__seed8__n_samples5"]
    assert len({a.config_hash for a in arms}) == 8
    assert {a.config.algorithm.params["max_steps"] for a in arms} == {2}  # over each run's own
    assert [a.config.eval.n_samples for a in arms[:4]] == [5, 5, 6, 6]
    # a group chosen after the file replaces the file's block for it, in every arm
    (single,) = plan(EXAMPLES / "minimal.yaml", ["eval=tool_selection"])
    assert single.config.eval.inference is None and single.config.eval.max_tokens == 64


def test_run_experiment_runs_every_arm_on_mock(project: Path) -> None:
    result = run_experiment(EXAMPLES / "runs.yaml", project / "sweep")
    assert [arm.status for arm in result.arms] == ["completed"] * 4
    assert result.best_arm is not None
    summary = json.loads((project / "sweep" / "sweep_result.json").read_text())
    assert {arm["name"] for arm in summary["arms"]} == {a.name for a in result.arms}


@pytest.mark.parametrize(
    ("example", "metric"),
    [
        ("minimal", "eval/exact_match"),
        ("continual", "stage/2_train_3/train/steps"),  # three unnamed stages, chained
        ("project_metadata", "test/composio_eval_v2/pass_rate"),
        ("benchmarks_val_test", "val/val_set/pass_rate"),
        ("experiment_metadata", "test/tool_bench/pass_rate"),
    ],
)
def test_single_run_examples_run_on_mock(project: Path, example: str, metric: str) -> None:
    result = Experiment.from_yaml(EXAMPLES / f"{example}.yaml").run(project / "run")
    (arm,) = result.arms
    assert arm.status == "completed"
    assert metric in arm.metrics


def test_evsys_run_a_reference_file_sweeps_with_hydra(project: Path) -> None:
    done = run_evsys("run", str(EXAMPLES / "matrix.yaml"), cwd=project, module=False)
    assert done.returncode == 0, done.stderr
    (sweep,) = (project / "outputs" / "sweeps").glob("*/*_rank_lr")
    plan_entries = json.loads((sweep / "sweep_plan.json").read_text())["arms"]
    assert [a["config_hash"] for a in plan_entries] == [
        h for _, h in arms_of(plan(EXAMPLES / "matrix.yaml"))
    ]
    records = [
        json.loads((sweep / a["name"] / "run_result.json").read_text()) for a in plan_entries
    ]
    assert {r["status"] for r in records} == {"completed"}

    # Resume replays base.yaml (not the default primary config, which adds the quickstart
    # experiment) and the directories' ${now:…} as written; only the missing arm runs again.
    shutil.rmtree(sweep / plan_entries[0]["name"])
    resumed = run_evsys(
        "resume", str(sweep), cwd=project, module=False, env={"EVSYS_CONFIG_NAME": "config"}
    )
    assert resumed.returncode == 0, resumed.stderr
    again = [json.loads((sweep / a["name"] / "run_result.json").read_text()) for a in plan_entries]
    assert again[0]["status"] == "completed" and again[0]["run_id"] != records[0]["run_id"]
    assert [r["run_id"] for r in again[1:]] == [r["run_id"] for r in records[1:]]


def test_evsys_run_a_single_run_with_an_override(project: Path) -> None:
    done = run_evsys(
        "run",
        str(EXAMPLES / "minimal.yaml"),
        "algorithm.params.max_steps=3",
        cwd=project,
        module=False,
    )
    assert done.returncode == 0, done.stderr
    assert "renderer_name: only the tinker backend" in done.stderr  # what was adapted is said
    (run_dir,) = (project / "outputs" / "runs").glob("*/*_hello_sft")
    record = json.loads((run_dir / "run_result.json").read_text())
    assert record["status"] == "completed" and record["metrics"]["train/steps"] == 3


def test_migrate_writes_a_runnable_experiment_file(project: Path) -> None:
    source = EXAMPLES / "runs.yaml"
    done = run_evsys("migrate", str(source), cwd=project, module=False)
    assert done.returncode == 0, done.stderr
    written = project / "experiments" / "sft_vs_rl.yaml"
    assert "experiment=sft_vs_rl --multirun" in done.stdout
    text = written.read_text()
    assert text.startswith("# @package _global_") and "arms:" in text and "n_repeats: 2" in text
    again = run_evsys("migrate", str(source), cwd=project, module=False)
    assert again.returncode == 2 and "exists" in again.stderr  # nothing overwritten
    planned = run_evsys("plan", "experiment=sft_vs_rl", "--json", cwd=project, module=False)
    assert planned.returncode == 0, planned.stderr
    hashes = [(a["name"], a["config_hash"]) for a in json.loads(planned.stdout)["arms"]]
    assert hashes == arms_of(plan(source))


def test_from_python_a_bad_file_raises_naming_its_keys(project: Path) -> None:
    path = project / "bad.yaml"
    path.write_text(BAD["misspelt_param"][0])
    with pytest.raises(ConfigError) as caught:
        Experiment.from_yaml(path).run(project / "run")
    assert "run.algorithm.params.lerning_rate: unknown key" in str(caught.value)
    assert validate_yaml(path)[0].source == f"{path}:6"
    assert not (project / "run").exists()


def test_dump_yaml_round_trips(project: Path, tmp_path: Path) -> None:
    config = load_yaml(EXAMPLES / "matrix.yaml")
    dump_yaml(config, tmp_path / "again.yaml")
    assert arms_of(plan(tmp_path / "again.yaml")) == arms_of(plan(config))


# -- bad input: exit 2, one report naming the file, the key and its line ------------------------

BAD = {
    "unknown_top_level_key": (
        "name: x\nrun: {name: r, data: {path: data/train.jsonl}, model: {name: m}, "
        "algorithm: {kind: sft}, backend: {kind: mock}}\nmatrx: {}\n",
        "matrx: unknown key",
        ":3",
    ),
    "run_and_matrix": (
        "name: x\nrun: {name: r}\nmatrix:\n  base_run: {name: r}\n  axes: {seed: [1, 2]}\n",
        "exactly one of run, runs, matrix must be set; found run and matrix",
        "",
    ),
    "axis_not_a_list": (
        "name: x\nmatrix:\n  base_run: {name: r}\n  axes:\n    algorithm.params.lora_rank: 8\n",
        "matrix.axes.algorithm.params.lora_rank: Input should be a valid list",
        ":5",
    ),
    "axis_without_values": (
        "name: x\nmatrix:\n  base_run: {name: r}\n  axes:\n    seed: []\n",
        "axis 'seed' has no value",
        ":2",
    ),
    "axis_naming_no_field": (
        "name: x\nmatrix:\n  base_run: {name: r, data: {path: data/train.jsonl}, model: {name: m},"
        " algorithm: {kind: sft}, backend: {kind: mock}}\n  axes:\n"
        "    algorithm.params.lora_rnk: [1, 2]\n",
        "matrix.axes.algorithm.params.lora_rnk: unknown key",
        ":5",
    ),
    "misspelt_param": (
        "name: x\nrun:\n  name: r\n  data: {path: data/train.jsonl}\n  model: {name: m}\n"
        "  algorithm: {kind: sft, params: {lerning_rate: 1e-4}}\n  backend: {kind: mock}\n",
        "run.algorithm.params.lerning_rate: unknown key",
        ":6",
    ),
    "unknown_kind": (
        "name: x\nruns:\n  - {name: a, data: {path: data/train.jsonl}, model: {name: m},"
        " algorithm: {kind: sft}, backend: {kind: mock}}\n"
        "  - name: b\n    data: {path: data/train.jsonl}\n    model: {name: m}\n"
        "    algorithm: {kind: sftt}\n    backend: {kind: mock}\n",
        "runs[1].algorithm.kind",
        ":7",
    ),
    "dataset_by_id": (
        (EXAMPLES / "dataset_by_id.yaml").read_text(),
        "dataset_id 'ds-123' cannot be resolved: no dashboard is configured",
        ":7",
    ),
    "not_yaml": ("name: x\nrun: [\n", "not valid YAML", ":3"),
    "name_is_a_path": (
        "version: 1\nname: ../../etc\nrun: {name: r}\n",
        "name: the experiment's",
        ":2",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_exit_2_naming_the_file_and_key(project: Path, case: str) -> None:
    text, message, line = BAD[case]
    path = project / f"{case}.yaml"
    path.write_text(text)
    for command in (["run"], ["validate", "--deep"]):
        done = run_evsys(*command[:1], str(path), *command[1:], cwd=project, module=False)
        report = done.stderr + done.stdout
        assert done.returncode == 2, report
        assert message in report, report
        assert f"{path}{line}" in report, report
        assert "Traceback" not in report
    assert not (project / "outputs").exists()


def test_an_evsys_experiment_file_is_pointed_to_its_own_command(project: Path) -> None:
    path = project / "lora.yaml"
    path.write_text(
        "# @package _global_\ndefaults:\n  - override /algorithm: sft\nhydra: {sweeper: {}}\n"
    )
    done = run_evsys("validate", str(path), cwd=project, module=False)
    assert done.returncode == 2
    assert "looks like an evsys experiment file" in done.stdout
    assert "experiment=lora" in done.stdout


# -- values reach Hydra unchanged ---------------------------------------------------------------

KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12).filter(
    lambda s: "${" not in s  # an interpolation, on purpose
)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_literal_reads_back_as_the_same_value(value) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from evsys.reference_yaml.translate import literal

    parsed = OverridesParser.create().parse_override(f"++key={literal(value)}").value()
    assert parsed == value
