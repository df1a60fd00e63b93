"""Bad input, fuzzed: every entry point refuses it the same way, and none of them writes a thing.

Property-based (hypothesis), in this process: each generated command line goes through
``evsys validate``, ``evsys plan``, ``python -m evsys`` and ``python -m evsys --multirun`` (their
``main`` functions, with Hydra's own start replaced by a marker, so an accepted input stops right
where the run would begin). A refused input must exit 2 with a report and no traceback, and leave
the working directory empty; the entry points must agree on what they refuse.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evsys.app
from evsys import output_dirs
from evsys.cli import main as cli_main

EXAMPLES = int(os.environ.get("EVSYS_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # the working directory must stay empty
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class _HydraReached(Exception):
    """The input passed every check: the run would start here."""


class _HydraStandIn:
    @staticmethod
    def main(**_: object):
        def decorate(task):
            def start() -> None:
                raise _HydraReached

            return start

        return decorate


@pytest.fixture(scope="module")
def empty_dir() -> Iterator[Path]:
    previous = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(previous)


@pytest.fixture(autouse=True)
def _hydra_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evsys.app, "hydra", _HydraStandIn)


def _call(
    entry, argv: list[str], where: Path, files: dict[str, str] | None = None
) -> tuple[str, str]:
    """("refused" | "accepted" | "crashed: …", output) of one entry point, with ``files``
    (relative path → text, part of the input) written into ``where`` first."""
    files = files or {}
    for name, text in files.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(text)
    inputs = set(files) | {str(folder) for name in files for folder in Path(name).parents}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            entry(argv)
        except _HydraReached:
            outcome = "accepted"
        except SystemExit as exit_:
            outcome = {0: "accepted", 2: "refused"}.get(exit_.code, f"exit {exit_.code}")
        except Exception as exc:  # a traceback would have reached the user
            outcome = f"crashed: {type(exc).__name__}: {exc}"
        else:
            outcome = "returned"
    written = sorted(str(p.relative_to(where)) for p in where.rglob("*"))
    written = [path for path in written if path not in inputs]
    output_dirs._release_all()  # what an accepted run claimed, as at its exit
    _empty(where)
    if outcome == "refused":
        assert not written, f"{argv}: refused but wrote {written[:5]}"
    return outcome, out.getvalue()


def _empty(where: Path) -> None:
    for path in sorted(where.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()


def _entry_points(
    overrides: list[str], where: Path, files: dict[str, str] | None = None
) -> dict[str, tuple[str, str]]:
    return {
        "validate": _call(cli_main, ["validate", *overrides], where, files),
        "plan": _call(cli_main, ["plan", *overrides], where, files),
        "run": _call(evsys.app.main, list(overrides), where, files),
        "multirun": _call(evsys.app.main, ["--multirun", *overrides], where, files),
    }


def _check(results: dict[str, tuple[str, str]], overrides: list[str], must_refuse: bool) -> None:
    outcomes = {name: outcome for name, (outcome, _) in results.items()}
    for name, (outcome, output) in results.items():
        assert outcome in ("accepted", "refused"), f"{name} {overrides}: {outcome}\n{output}"
        assert "Traceback" not in output, f"{name} {overrides}:\n{output}"
        if outcome == "refused":
            assert "evsys:" in output and len(output) < 20_000, f"{name} {overrides}:\n{output}"
    assert len(set(outcomes.values())) == 1, f"{overrides}: entry points disagree: {outcomes}"
    if must_refuse:
        assert outcomes["run"] == "refused", f"{overrides}: accepted"


# -- what the fuzzer writes -------------------------------------------------------------------

KEYS = [
    "seed",
    "name",
    "algorithm.params.lora_rank",
    "algorithm.params.learning_rate",
    "algorithm.params.batch_size",
    "algorithm.params.max_steps",
    "eval.max_tokens",
    "data.path",
    "backend.params.fail_at_step",
    "tags",
    "algorithm",
    "backend",
    "model",
    "log_store",
]
GRAMMAR = "=,()[]{}'\"$~+:.*\\ abx01-"
VALUES = ["x", "-1", "0", "1.5", "[1]", "{a: 1}", "null", "''", "1e999", "true", "???", "${nope}"]
PATHISH = st.text(alphabet="ab./_- ~$", min_size=0, max_size=10).filter(
    lambda text: not text.startswith(("/", "~"))  # nothing absolute: the fuzzer writes in tmp
)


def grammar_lines() -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(st.sampled_from(KEYS), st.text(alphabet=GRAMMAR, max_size=10)).map("=".join),
        st.text(alphabet=GRAMMAR, min_size=1, max_size=12),
    )


def typed_values() -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)).map("=".join)


def hydra_settings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-3, 3).map(lambda n: f"hydra.sweeper.n_repeats={n}"),
        st.sampled_from(VALUES).map(lambda v: f"hydra.sweeper.n_repeats={v}"),
        st.text(alphabet="{}abse.$_", max_size=10).map(
            lambda t: f"hydra.sweeper.name_template='{t}'"
        ),
        st.sampled_from(["1,,2", "range(1,5,0)", "range(5,1)", "interval(0,1)", "1,2", "x"]).map(
            lambda e: f"+hydra.sweeper.params.algorithm.params.max_steps='{e}'"
        ),
        st.sampled_from(["gpus_per_arm=0", "max_parallel=-1", "foo=1"]).map(
            lambda s: f"hydra.launcher.{s}"
        ),
        st.sampled_from(["nope", "gpus", "basic"]).map(lambda o: f"hydra/launcher={o}"),
    )


def names_and_dirs() -> st.SearchStrategy[str]:
    return st.one_of(
        PATHISH.map(lambda t: f"name='{t}'"),
        PATHISH.map(lambda t: f"hydra.sweep.dir='{t}'"),
        PATHISH.map(lambda t: f"hydra.run.dir='{t}'"),
        st.sampled_from(["../../x", "a/b", "..", ".", "x\\\\y"]).map(lambda t: f"name='{t}'"),
        st.just("~name"),
    )


def sweep_expressions() -> st.SearchStrategy[str]:
    ints = st.integers(-3, 6)
    return st.one_of(
        st.tuples(ints, ints, ints).map(lambda r: f"seed=range({r[0]},{r[1]},{r[2]})"),
        st.tuples(ints, ints).map(lambda r: f"algorithm.params.max_steps=range({r[0]},{r[1]})"),
        st.sampled_from(
            [
                "seed=1,,2",
                "seed=choice()",
                "algorithm.params.learning_rate=interval(0,1)",
                "algorithm=glob(zz*)",
                "algorithm=glob(s*)",
                "algorithm.params.lora_rank=4,0",
                "algorithm.params.batch_size=2,x",
                "name=a,../b",
                "seed=1,2",
                "hydra.sweeper.params.seed=1,2",
            ]
        ),
    )


# -- the properties ------------------------------------------------------------------------------


@FUZZ
@given(lines=st.lists(grammar_lines(), min_size=1, max_size=3))
def test_bad_override_grammar_is_refused_alike(lines: list[str], empty_dir: Path) -> None:
    single = [line for line in lines if "," not in line]  # several values: a sweep, below
    if single:
        _check(_entry_points(single, empty_dir), single, must_refuse=False)


@FUZZ
@given(lines=st.lists(st.one_of(typed_values(), names_and_dirs()), min_size=1, max_size=3))
def test_bad_values_names_and_dirs_are_refused_alike(lines: list[str], empty_dir: Path) -> None:
    _check(_entry_points(lines, empty_dir), lines, must_refuse=False)


@FUZZ
@given(lines=st.lists(hydra_settings(), min_size=1, max_size=3))
def test_bad_hydra_settings_are_refused_alike(lines: list[str], empty_dir: Path) -> None:
    _check(_entry_points(lines, empty_dir), lines, must_refuse=False)


@FUZZ
@given(
    sweeps=st.lists(sweep_expressions(), min_size=1, max_size=3),
    extra=st.lists(st.one_of(typed_values(), hydra_settings(), names_and_dirs()), max_size=2),
)
def test_bad_sweeps_are_refused_by_plan_and_multirun_alike(
    sweeps: list[str], extra: list[str], empty_dir: Path
) -> None:
    lines = [*sweeps, *extra]
    plan = _call(cli_main, ["plan", *lines], empty_dir)
    multirun = _call(evsys.app.main, ["--multirun", *lines], empty_dir)
    for outcome, output in (plan, multirun):
        assert outcome in ("accepted", "refused"), f"{lines}: {outcome}\n{output}"
        assert "Traceback" not in output, f"{lines}:\n{output}"
    assert plan[0] == multirun[0], f"{lines}: plan {plan[0]}, --multirun {multirun[0]}"


# Text a hand-edited config file may hold: YAML's punctuation, indentation, tabs, odd bytes.
YAMLISH = st.text(alphabet="ab: -[]{}'\"#&*!|>%@`,\n\t01\x00\ufeff", max_size=40)


@FUZZ
@given(text=YAMLISH)
def test_a_project_config_file_of_any_text_is_refused_alike(text: str, empty_dir: Path) -> None:
    files = {"conf/model/edited.yaml": text}
    _check(_entry_points(["model=edited"], empty_dir, files), [text], must_refuse=False)


@pytest.mark.parametrize("lines", [["seed=???"], ["seed=???", "hydra.sweep.dir='_'"]])
def test_a_required_value_marker_is_refused_by_every_entry_point(
    lines: list[str], empty_dir: Path
) -> None:
    """``???`` reaches a run as the marker itself, never as the schema's default."""
    results = _entry_points(lines, empty_dir)
    _check(results, lines, must_refuse=True)
    assert "seed: required value is missing" in results["validate"][1]


@pytest.mark.parametrize(
    "lines",
    [
        ["seed=1,,2"],
        ["seed=range(1,5,0)"],
        ["seed=range(5,1)"],
        ["algorithm=glob(zz*)"],
        ["algorithm.params.learning_rate=interval(0,1)"],
        ["hydra.sweeper.params.seed=1,2"],
        ["seed=1,2", "hydra.sweeper.name_template='{base}_${oops}'"],
        ["seed=1,2", "hydra.sweeper.name_template='{nope.x}'"],
        ["seed=1,2", "~name"],
        ["seed=1,2", "hydra.sweep.dir=''"],
        ["seed=1,2", "hydra.sweep.dir=../outside"],
        ["seed=1,2", "hydra.sweeper.n_repeats=0"],
        ["seed=1,2", "hydra.sweeper.n_repeats=abc"],
        ["seed=1,2", "hydra.launcher.foo=1"],
        ["seed=1,2", "hydra/launcher=nope"],
        ["seed=1,2", "hydra/launcher=gpus", "hydra.launcher.gpus_per_arm=0"],
        ["name=../../x,y"],
        [
            "+hydra.sweeper.paired=[{seed:'1,2',algorithm.params.lora_rank:'4,8'}]",
            "hydra.sweeper.n_repeats=2",
        ],
    ],
)
def test_known_bad_sweeps_are_refused(lines: list[str], empty_dir: Path) -> None:
    for entry, argv in ((cli_main, ["plan", *lines]), (evsys.app.main, ["--multirun", *lines])):
        outcome, output = _call(entry, argv, empty_dir)
        assert outcome == "refused", f"{argv}: {outcome}\n{output}"
        assert "Traceback" not in output and output.count("\n") < 40, output


def test_a_problem_shared_by_3000_arms_is_reported_once(empty_dir: Path) -> None:
    lines = ["seed=range(0,3000)", "algorithm.params.lora_rank=0"]
    outcome, output = _call(cli_main, ["plan", *lines], empty_dir)
    assert outcome == "refused"
    report = output[output.index("evsys: 3000 of 3000 arms are invalid") :]
    assert "arms:     #0–#2999 (3000 arms)" in report
    assert report.count("algorithm.params.lora_rank:") == 1 and len(report) < 2_000
