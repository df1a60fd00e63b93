"""Every YAML form of the reference's pages through the commands a researcher types: ``evsys
validate --deep``, ``evsys plan``, ``evsys migrate`` and ``evsys run FILE -o OUT`` (the reference's
JSON summary and exit codes), the shorthand forms anywhere a config is read, the reference's
experiment folder, and hostile variants of an example refused with one clear error."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import run_evsys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reference_yaml import EXAMPLES, RUNNABLE, project  # noqa: F401  (the fixture)

from evsys import Experiment
from evsys.cli import main as evsys_main
from evsys.shorthand_forms import named_stages

# Arms each example runs (a matrix's cells, each of `runs` and its repeats).
ARMS = {"matrix": 6, "run_forms": 2, "runs": 4}


@pytest.mark.parametrize("example", RUNNABLE)
def test_every_example_through_validate_plan_migrate_and_run(
    project: Path,  # noqa: F811
    example: str,
) -> None:
    path = str(EXAMPLES / f"{example}.yaml")
    for command in (["validate", path, "--deep"], ["plan", path], ["migrate", path]):
        done = run_evsys(*command, cwd=project, module=False)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
    summary = project / "summary.json"
    done = run_evsys("run", path, "-o", str(summary), cwd=project, module=False, timeout=300)
    assert done.returncode == 0, done.stderr
    entries = json.loads(summary.read_text())
    assert len(entries) == ARMS.get(example, 1)
    for entry in entries:
        assert set(entry) >= {"run_id", "status", "metrics", "artifacts", "error"}
        assert entry["status"] == "completed" and entry["error"] is None
        assert Path(entry["run_dir"], "run_result.json").is_file()
        record = json.loads(Path(entry["run_dir"], "run_result.json").read_text())
        assert record["run_id"] == entry["run_id"] and record["metrics"] == entry["metrics"]


def test_run_forms_score_validation_tool_slugs_and_a_bare_success_metric(
    project: Path,  # noqa: F811
) -> None:
    result = Experiment.from_yaml(EXAMPLES / "run_forms.yaml").run(project / "sweep")
    sft, rl = result.arms
    assert sft.status == rl.status == "completed"
    # validation: scored in the loop, each arm on its own cadence
    assert "val/val_set/pass_rate" in sft.metrics and "val/val_set/pass_rate" in rl.metrics
    # tool_slug rows: trained on and scored like answer rows (the mock learns the slugs)
    assert sft.metrics["eval/exact_match"] > 0.5 and sft.metrics["eval/toolkit_match"] > 0.5
    # a benchmark's single `model` is scored as a baseline
    assert "test/full_test/pass_rate@baseline" in sft.metrics
    # `final_loss` is the one reported metric of that name: it ranks the arms reporting it
    summary = json.loads((project / "sweep" / "sweep_result.json").read_text())
    assert summary["success_metric"] == {"name": "train/final_loss", "direction": "min"}
    assert "train/final_loss" not in rl.metrics  # RL reports rewards: only the SFT arm ranks
    assert result.best_arm is not None and result.best_arm.name == "sft"


def test_a_bare_success_metric_that_names_several_is_refused_with_the_candidates(
    project: Path,  # noqa: F811
) -> None:
    config = {
        "name": "ambiguous",
        "metadata": {
            "success_metric": "pass_rate",
            "benchmark": [
                {"path": "data/benchmark/full_test"},
                {"path": "data/validation/val_set", "tags": ["val"], "run_every": 5},
            ],
        },
        "matrix": {
            "base_run": {
                "name": "r",
                "data": {"path": "data/train.jsonl", "transforms": [{"kind": "jsonl_to_chat"}]},
                "model": {"name": "m"},
                "algorithm": {"kind": "sft", "params": {"max_steps": 5}},
                "backend": {"kind": "mock"},
            },
            "axes": {"seed": [1, 2]},
        },
    }
    single = {**config, "name": "ambiguous_run", "run": config["matrix"]["base_run"]}
    del single["matrix"]
    for name, content in [("sweep", config), ("run", single)]:  # a sweep and a single run
        path = project / f"{name}.yaml"
        path.write_text(yaml.safe_dump(content))
        done = run_evsys("run", str(path), cwd=project, module=False, timeout=300)
        assert done.returncode == 2, (name, done.stderr)
        assert (
            "`pass_rate` names several reported metrics: `test/full_test/pass_rate`, "
            "`val/val_set/pass_rate`; give one of them in full" in done.stderr
        ), name


def test_a_failed_run_exits_2_for_a_reference_file_and_1_for_an_experiment(
    project: Path,  # noqa: F811
) -> None:
    source = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    source["run"]["backend"]["params"] = {"fail_at_step": 1}
    path = project / "failing.yaml"
    path.write_text(yaml.safe_dump(source))
    summary = project / "out.json"
    done = run_evsys("run", str(path), "--output", str(summary), cwd=project, module=False)
    assert done.returncode == 2, done.stderr
    (entry,) = json.loads(summary.read_text())
    assert entry["status"] == "failed" and "fail_at_step" in entry["error"]

    hydra_style = run_evsys(
        "run", "backend=mock", "+backend.params.fail_at_step=1", cwd=project, module=False
    )
    assert hydra_style.returncode == 1, hydra_style.stderr


def test_output_needs_a_file(project: Path) -> None:  # noqa: F811
    done = run_evsys("run", str(EXAMPLES / "minimal.yaml"), "-o", cwd=project, module=False)
    assert done.returncode == 2
    assert "-o needs a file" in done.stderr and "Traceback" not in done.stderr


def test_routed_recipe_keys_and_shorthands_in_evsys_own_configs(project: Path) -> None:  # noqa: F811
    for override in ("algorithm=mock_sft", "algorithm={kind: local_rl}"):
        done = run_evsys("validate", override, "backend=mock", cwd=project, module=False)
        assert done.returncode == 0, (override, done.stdout, done.stderr)
    from evsys.config import ContinualConfig, Metadata

    stages = ContinualConfig.model_validate(
        {"datasets": [{"path": "x/corpus_a.jsonl"}, {"path": "x/b.jsonl"}, {"path": "y/b.jsonl"}]}
    ).datasets
    assert [stage.name for stage in stages] == ["corpus_a", "b", "b_3"]
    named = named_stages([{"dataset_name": "corpus a"}, {"name": "stage3"}, {"rows": []}])
    assert [stage["name"] for stage in named] == ["corpus_a", "stage3", "stage3_3"]
    (benchmark,) = Metadata.model_validate(
        {"benchmark": {"path": "data/benchmark/full_test", "model": "mock:m"}}
    ).benchmark
    assert benchmark.models == ["mock:m"]


def test_new_experiment_reference_layout_runs_as_written(project: Path) -> None:  # noqa: F811
    done = run_evsys(
        "new-experiment", "rank_probe", "--layout", "reference", "--date", "20260105",
        cwd=project, module=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    folder = project / "experiments" / "20260105_rank_probe"
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "run.py"]
    assert (
        'Experiment.from_yaml(Path(__file__).with_name("config.yaml")).run()'
        in (folder / "run.py").read_text()
    )
    done = run_evsys("validate", str(folder / "config.yaml"), "--deep", cwd=project, module=False)
    assert done.returncode == 0, done.stdout + done.stderr
    again = run_evsys(
        "new-experiment", "rank_probe", "--layout", "reference", "--date", "20260105",
        cwd=project, module=False,
    )  # fmt: skip
    assert again.returncode == 2 and "already exists" in again.stderr
    single = run_evsys(
        "new-experiment", "rank_probe", "--date", "20260105", cwd=project, module=False
    )
    assert (
        single.returncode == 0 and (project / "experiments" / "20260105_rank_probe.yaml").is_file()
    )


# -- hostile variants ---------------------------------------------------------------------------

MINIMAL = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
# Mappings whose keys the schema fixes (an unknown key is an error there).
STRICT_NODES = ["", "run", "run.data", "run.model", "run.eval", "run.algorithm.params"]
ODD_NAMES = st.one_of(
    st.sampled_from(["../up", "a/b", "${oc.env:HOME}", "a\\b", "..", ""]),
    st.text(min_size=1, max_size=12).map(lambda text: text + "/x"),
)


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    elif not isinstance(node, list):
        yield prefix, node


LEAVES = [(path, value) for path, value in _leaves(MINIMAL) if path != "run.name"]


def _get(config, dotted):
    for key in filter(None, dotted.split(".")):
        config = config[key]
    return config


def _wrong_value(value):
    if isinstance(value, bool):
        return st.sampled_from(["maybe", [True]])
    if isinstance(value, (int, float)):
        return st.sampled_from(["fast", [1], {"x": 1}])
    return st.sampled_from([[1, 2], {"x": 1}])


@st.composite
def hostile_variants(draw):
    """minimal.yaml with one thing wrong: an unknown key, a value of the wrong type, or a name
    that cannot name a directory. Returns the config and the key a report must name."""
    config = copy.deepcopy(MINIMAL)
    kind = draw(st.sampled_from(["unknown key", "wrong type", "odd name"]))
    if kind == "unknown key":
        where = draw(st.sampled_from(STRICT_NODES))
        node = _get(config, where)
        key = draw(
            st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True).filter(lambda k: k not in node)
        )
        node[key] = draw(st.one_of(st.integers(), st.text(max_size=5)))
        return config, f"{where}.{key}" if where else key
    if kind == "wrong type":
        path, value = draw(st.sampled_from(LEAVES))
        parent, _, key = path.rpartition(".")
        _get(config, parent)[key] = draw(_wrong_value(value))
        return config, path
    config["name"] = draw(ODD_NAMES)
    return config, "name"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant=hostile_variants())
def test_hostile_variants_exit_2_with_one_clear_error(variant) -> None:
    config, key = variant
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "config.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        out, err = io.StringIO(), io.StringIO()
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            pytest.raises(SystemExit) as exit_info,
        ):
            evsys_main(["validate", str(path), "--deep"])
    text = out.getvalue() + err.getvalue()
    assert exit_info.value.code == 2, text
    assert "Traceback" not in text
    assert "has 1 problem:" in text, text
    # The one problem names the key, or the block holding it (a whole block of the wrong type).
    parent = key.rpartition(".")[0]
    assert f"\n  {key}" in text or (parent and f"\n  {parent}" in text), (key, text)
