"""Bad configs: every problem in one report, each with path, value, expectation, fix and source."""

from __future__ import annotations

from pathlib import Path

import pytest

from evsys.cli.validate import check
from evsys.errors import Problem


def by_path(problems: list[Problem]) -> dict[str, Problem]:
    return {p.path: p for p in problems}


def test_the_default_config_is_valid(workdir: Path) -> None:
    assert check([]) == []


def test_every_problem_is_reported_at_once(workdir: Path) -> None:
    problems = by_path(
        check(
            [
                "algorithm.params.lerning_rate=1e-3",
                "algorithm.params.batch_size=foo",
                "backend=mok",
                "eval.metrics.0.kind=exact_mach",
                "seed=1.5",
            ]
        )
    )
    assert set(problems) == {
        "algorithm.params.lerning_rate",
        "algorithm.params.batch_size",
        "backend",
        "eval.metrics[0].kind",
        "seed",
    }

    typo = problems["algorithm.params.lerning_rate"]
    assert typo.message == "unknown key"
    assert typo.value == 0.001
    assert typo.suggestion == "learning_rate"
    assert "learning_rate" in typo.expected
    assert typo.source == "override 'algorithm.params.lerning_rate=1e-3'"

    wrong_type = problems["algorithm.params.batch_size"]
    assert wrong_type.value == "foo"
    assert "integer" in wrong_type.message

    option = problems["backend"]
    assert option.message == "unknown option 'mok' for config group 'backend'"
    assert option.suggestion == "mock"

    kind = problems["eval.metrics[0].kind"]
    assert kind.message == "unknown metric 'exact_mach'"
    assert kind.suggestion == "exact_match"
    assert "toolkit_match" in kind.expected


def test_value_constraints_name_the_bound(workdir: Path) -> None:
    problems = by_path(check(["algorithm.params.learning_rate=0", "eval.max_tokens=-1"]))
    assert problems["algorithm.params.learning_rate"].expected == "a number > 0"  # not 0.0
    assert problems["eval.max_tokens"].expected == "a number > 0"


def test_missing_required_value_names_its_source(workdir: Path) -> None:
    problems = by_path(check(["log_store=multiplex"]))
    missing = problems["log_store.params.stores"]
    assert missing.message == "required value is missing"
    assert missing.source == "registry defaults of log_store=multiplex"


def test_misspelt_key_in_a_conf_file_names_the_file_and_option(workdir: Path) -> None:
    (workdir / "conf" / "algorithm").mkdir(parents=True)
    (workdir / "conf" / "algorithm" / "my_sft.yaml").write_text(
        "defaults: [sft, _self_]\nparams:\n  lerning_rate: 3e-4\n"
    )
    problems = by_path(check(["algorithm=my_sft"]))
    typo = problems["algorithm.params.lerning_rate"]
    assert typo.suggestion == "learning_rate"
    assert typo.source == f"{Path('conf/algorithm/my_sft.yaml')} (algorithm=my_sft)"


def test_problems_in_an_experiment_file_name_the_experiment(workdir: Path) -> None:
    (workdir / "experiments").mkdir()
    (workdir / "experiments" / "bad.yaml").write_text(
        "# @package _global_\nseed: notanint\nmetadata:\n"
        "  success_metric: {name: eval/exact_match, direction: up}\n"
    )
    problems = by_path(check(["experiment=bad"]))
    assert problems["seed"].source == f"{Path('experiments/bad.yaml')} (experiment=bad)"
    assert problems["metadata.success_metric.direction"].value == "up"


def test_an_experiment_file_setting_an_unknown_sweeper_key_is_a_problem(workdir: Path) -> None:
    (workdir / "experiments").mkdir()
    (workdir / "experiments" / "typo.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    n_repeat: 3\n"
    )
    problems = by_path(check(["experiment=typo"]))
    assert "n_repeat" in problems["hydra.sweeper.n_repeat"].message
    assert problems["hydra.sweeper.n_repeat"].source == (
        f"{Path('experiments/typo.yaml')} (experiment=typo)"
    )


def test_unknown_experiment_suggests_the_closest(workdir: Path) -> None:
    problems = by_path(check(["experiment=lora_rnak"]))
    assert problems["experiment"].suggestion == "lora_rank"


def test_nested_extension_kinds_are_checked(workdir: Path) -> None:
    problems = by_path(check(["algorithm=rl", "algorithm.params.verifier.kind=exact"]))
    assert problems["algorithm.params.verifier.kind"].suggestion == "exact_match"


def test_cross_field_rules_run_before_anything(workdir: Path) -> None:
    problems = by_path(check(["algorithm.params.num_epochs=3", "algorithm.params.max_steps=5"]))
    assert "num_epochs=3 would be ignored" in problems["algorithm.params"].message


def test_a_val_benchmark_needs_a_cadence(workdir: Path) -> None:
    problems = check(["+metadata.benchmark=[{path: bench, tags: [val]}]"])
    assert [p.path for p in problems] == ["metadata.benchmark[0]"]
    assert "run_every" in problems[0].message


def test_broken_interpolation_is_reported_once(workdir: Path) -> None:
    problems = check(["name=${nowhere}"])
    assert len(problems) == 1
    assert problems[0].path == "name"
    assert "nowhere" in problems[0].message


def test_sweep_syntax_in_a_single_run_points_to_multirun(workdir: Path) -> None:
    (problem,) = check(["seed=1,2"])
    assert "--multirun" in problem.message


@pytest.mark.parametrize("line", ["algorithm.params.lr=[1,", "=3", "seed=(1"])
def test_unparsable_override_is_a_problem_not_a_crash(workdir: Path, line: str) -> None:
    (problem,) = check([line])
    assert problem.value == line
    assert problem.source == f"override '{line}'"


def test_every_schema_field_takes_an_override_without_plus(workdir: Path) -> None:
    # eval.n_samples and metadata.hypothesis are set by no conf file: the schema node provides them.
    assert check(["eval.n_samples=5", "metadata.hypothesis=why", "data.limit=10"]) == []


def test_a_key_hydra_would_refuse_without_plus_is_reported(workdir: Path) -> None:
    # metadata.notes is a free-form dict: the schema accepts any key, Hydra wants `+` to add one.
    (problem,) = check(["metadata.notes.owner=me"])
    assert problem.path == "metadata.notes.owner"
    assert problem.expected == "+metadata.notes.owner=me"
    assert check(["+metadata.notes.owner=me"]) == []
