"""What validation knows beyond the schema: seeds, success metrics, eval metrics, benchmark ids."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evsys.checks import reported_metrics
from evsys.cli.validate import check
from evsys.compose.compose import compose_and_validate
from evsys.errors import Problem
from evsys.run.evaluation import score_metrics

BENCHMARK = REPO / "data" / "tool_selection" / "benchmark"
VALIDATION = REPO / "data" / "tool_selection" / "validation"


def by_path(problems: list[Problem]) -> dict[str, Problem]:
    return {p.path: p for p in problems}


# -- seeds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_outside_32_bits_is_refused(workdir: Path, seed: int) -> None:
    problem = by_path(check([f"seed={seed}"]))["seed"]
    assert problem.value == seed and problem.source == f"override 'seed={seed}'"


def test_the_seed_range_is_inclusive(workdir: Path) -> None:
    assert check(["seed=0"]) == [] and check([f"seed={2**32 - 1}"]) == []


def test_an_inference_client_seed_is_checked_too(workdir: Path) -> None:
    problems = by_path(check(["eval.inference={kind: mock, params: {seed: -3}}"]))
    assert set(problems) == {"eval.inference.params.seed"}


# -- success metric --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric",
    [
        "eval/exact_mach",  # misspelt: only the arms can tell, after the sweep (test_sweeps)
        "train/final_reward_mean",  # another recipe's
        "train/loss",
        "train/my_callback_score",  # a custom recipe, backend or callback may report anything
        "score",
    ],
)
def test_any_success_metric_is_valid_before_the_run(workdir: Path, metric: str) -> None:
    assert check([f"metadata.success_metric='{metric}'"]) == []


METRIC_NAMES = st.one_of(
    st.from_regex(r"(train|eval|val|test|baseline|stage)/[a-z0-9_/=@.\-]{1,24}", fullmatch=True),
    st.text(st.characters(exclude_characters="$\\", exclude_categories=["Cs"]), min_size=1),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=METRIC_NAMES, direction=st.sampled_from(["max", "min"]))
def test_a_success_metric_of_any_name_is_accepted(workdir: Path, name: str, direction: str) -> None:
    quoted = "'" + name.replace("'", "\\'") + "'"
    assert check([f"metadata.success_metric={{name: {quoted}, direction: {direction}}}"]) == []


@pytest.mark.parametrize(
    ("overrides", "metric"),
    [
        ([], "train/final_loss"),
        (["algorithm=rl", "data=arithmetic", "eval=default"], "train/final_reward_mean"),
        (["eval.baseline=true"], "baseline/eval/toolkit_match"),
        ([f"metadata.benchmark=[{{path: {BENCHMARK}}}]"], "test/tool_selection/exact_match"),
        (
            [f"metadata.benchmark=[{{path: {BENCHMARK}}}]"],
            "test/tool_selection/exact_match/toolkit=gmail",
        ),
        (
            [f"metadata.benchmark=[{{name: v, path: {VALIDATION}, tags: [val], run_every: 5}}]"],
            "val/v/toolkit_match",
        ),
    ],
)
def test_a_metric_the_run_reports_ranks(workdir: Path, overrides: list[str], metric: str) -> None:
    assert check([*overrides, f"metadata.success_metric='{metric}'"]) == []


# What the run reports is what validation declared: every declared name is reported, every
# reported name was declared (so a success metric is never refused for a metric that exists).
@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> str:
    record = run_in_process(["algorithm.params.max_steps=40"], tmp_path_factory.mktemp("t")).record
    return record["artifacts"]["final_checkpoint"]


def runs(teacher: str) -> dict[str, list[str]]:
    """One mock run of every recipe, and a continual one, with everything that adds metrics."""
    return {
        "sft": [
            "eval.baseline=true",
            f"metadata.benchmark=[{{path: {BENCHMARK}}}, "
            f"{{name: v, path: {VALIDATION}, tags: [val], run_every: 10}}]",
        ],
        "rl": ["experiment=rl_arithmetic", "algorithm.params.max_steps=4"],
        "distill": [
            "algorithm=distill",
            "algorithm.params.teacher=mock",
            f"algorithm.params.teacher_checkpoint={teacher}",
            "algorithm.params.max_steps=4",
        ],
        "combo": [
            "algorithm=combo",
            "+algorithm.params.phases=[{kind: sft, params: {max_steps: 4}}, "
            "{kind: rl, params: {max_steps: 2}}]",
        ],
        "sdft": [
            "algorithm=sdft",
            f"model.load_checkpoint_path={teacher}",
            "algorithm.params.rounds=2",
            "algorithm.params.max_steps=4",
        ],
        "continual": ["experiment=continual_mock", "eval.n_samples=5"],
    }


@pytest.mark.parametrize("name", sorted(runs("")))
def test_a_run_reports_exactly_what_validation_declares(
    workdir: Path, teacher: str, name: str
) -> None:
    overrides = runs(teacher)[name]
    _, config = compose_and_validate(overrides)
    declared = reported_metrics(config)
    record = run_in_process(overrides, workdir / "r").record
    assert record["status"] == "completed", record["error"]
    reported = set(record["metrics"])
    assert [n for n in declared if "*" not in n and n not in reported] == []
    assert [n for n in reported if not any(fnmatch.fnmatchcase(n, p) for p in declared)] == []


# -- eval metrics ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pass_at_k", "mean_reward"])
def test_a_metric_eval_cannot_compute_is_refused_with_the_reason(workdir: Path, kind: str) -> None:
    problems = by_path(
        check(
            [
                f"eval.metrics=[{{kind: exact_match}}, {{kind: {kind}}}]",
                f"metadata.benchmark=[{{path: {BENCHMARK}, metrics: [{{kind: {kind}}}]}}]",
            ]
        )
    )
    assert set(problems) == {"eval.metrics[1].kind", "metadata.benchmark[0].metrics[0].kind"}
    assert "a run's eval generates" in problems["eval.metrics[1].kind"].message


class _Broken:
    def __init__(self, **params: Any):
        pass

    def compute(self, *, predictions: Any, targets: Any) -> float:
        raise ValueError("cannot score this")


def test_one_failing_metric_costs_only_its_own_score(clean_registries: None) -> None:
    from evsys.config import MetricSpec
    from evsys.registry import register_metric

    register_metric("broken")(_Broken)
    specs = [MetricSpec(kind="broken"), MetricSpec(kind="exact_match")]
    rows = [{"answer": "A", "toolkit": "a"}, {"answer": "B", "toolkit": "b"}]
    errors: dict[str, Any] = {}
    scores = score_metrics(
        specs,
        ["A", "C"],
        rows,
        prefix="eval",
        run_name="r",
        breakdown_keys=["toolkit"],
        errors=errors,
    )
    assert scores == {
        "eval/exact_match": 0.5,
        "eval/exact_match/toolkit=a": 1.0,
        "eval/exact_match/toolkit=b": 0.0,
    }
    assert errors == {"metric_eval/broken_error": "ValueError: cannot score this"}


class _Judged:
    """A metric that asked a judge model once, ``tokens`` words back, 1 cent."""

    def __init__(self, tokens: int = 1):
        self.tokens = tokens

    def compute(self, *, predictions: Any, targets: Any) -> float:
        return 1.0

    def judge_calls(self) -> list[Any]:
        from evsys.clients.usage import CallUsage

        return [CallUsage(tokens_in=10, tokens_out=self.tokens, latency_s=0.5, cost_usd=0.01)]


def test_the_judge_usage_of_every_judge_metric_adds_up(clean_registries: None) -> None:
    from evsys.config import MetricSpec
    from evsys.registry import register_metric

    register_metric("judged")(_Judged)
    specs = [MetricSpec(kind="judged", params={"tokens": 3}), MetricSpec(kind="judged")]
    scores = score_metrics(specs, ["x"], [{"answer": "x"}], prefix="test/b", run_name="r")
    assert scores["test/b/judge/tokens_out"] == 4  # both metrics' calls, not the last one's
    assert scores["test/b/judge/cost_usd"] == pytest.approx(0.02)


# -- benchmark ids and retired keys ----------------------------------------------------------


def test_a_benchmark_id_is_refused_until_something_resolves_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVSYS_API_KEY", raising=False)  # no dashboard, no cache: nothing can
    problems = by_path(check([f"metadata.benchmark=[{{id: bench-7, path: {BENCHMARK}}}]"]))
    problem = problems["metadata.benchmark[0].id"]
    assert "dashboard" in problem.message and "`path`" in problem.message


def test_an_unknown_renderer_name_is_refused_naming_the_known_ones(workdir: Path) -> None:
    assert "model.renderer_name" not in by_path(check(["+model.renderer_name=qwen3"]))
    problem = by_path(check(["+model.renderer_name=qwen9"]))["model.renderer_name"]
    assert "unknown renderer 'qwen9'" in problem.message and "role_colon" in problem.message
