"""generations.jsonl, the answers an eval saved: read back as data, whatever a crash or a hand
left in it; only lines that match the current rows' prompts fill an answer slot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evsys.errors import ConfigError
from evsys.harness.config import ModelEvalConfig
from evsys.harness.journal import GENERATIONS, AnswerJournal, prompt_hash

PROMPTS = ["What is 1 + 1?", [{"role": "user", "content": "What is 2 + 2?"}], "What is 3 + 3?"]


def config(out: Path, **values: Any) -> ModelEvalConfig:
    return ModelEvalConfig(output_dir=str(out), model_name="m", **values)


def test_answers_are_on_disk_as_they_are_appended_and_read_back(tmp_path: Path) -> None:
    journal = AnswerJournal.for_eval(tmp_path, config(tmp_path), PROMPTS)
    journal.append(2, "c", 0, "<answer>6</answer>")
    # Flushed before append returns: another reader sees it while the journal is still open.
    lines = (tmp_path / GENERATIONS).read_text().splitlines()
    assert json.loads(lines[0])["eval"]["model_name"] == "m"
    assert json.loads(lines[1])["completion"] == "<answer>6</answer>"
    journal.append(0, "a", 1, "second sample")
    journal.close()
    again = AnswerJournal.for_eval(tmp_path, config(tmp_path, num_samples=2), PROMPTS)
    assert again.read(2) == [[None, "second sample"], [None, None], ["<answer>6</answer>", None]]
    assert again.read(1) == [[None], [None], ["<answer>6</answer>"]]  # sample 1: not asked now


def test_a_line_cut_short_by_a_crash_is_skipped_and_appending_goes_on(tmp_path: Path) -> None:
    with AnswerJournal.for_eval(tmp_path, config(tmp_path), PROMPTS) as journal:
        journal.append(0, "a", 0, "first")
    with (tmp_path / GENERATIONS).open("a") as handle:
        handle.write('{"index": 1, "sample": 0, "completion": "cut')  # no newline: a crash
    with AnswerJournal.for_eval(tmp_path, config(tmp_path), PROMPTS) as journal:
        assert journal.read(1) == [["first"], [None], [None]]
        journal.append(1, "b", 0, "second")
    reread = AnswerJournal.for_eval(tmp_path, config(tmp_path), PROMPTS).read(1)
    assert reread == [["first"], ["second"], [None]]


def test_answers_of_changed_prompts_are_not_reused(tmp_path: Path) -> None:
    with AnswerJournal.for_eval(tmp_path, config(tmp_path), PROMPTS) as journal:
        journal.append(0, "a", 0, "first")
        journal.append(1, "b", 0, "second")
    changed = ["What is 1 + 1?", "What is 9 + 9?"]  # row 1 changed, row 2 gone
    assert AnswerJournal.for_eval(tmp_path, config(tmp_path), changed).read(1) == [
        ["first"],
        [None],
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model_name": "other"}, "model_name='m'"),
        ({"temperature": 0.7}, "temperature=0.0"),
        ({"client_params": {"base_url": "http://elsewhere/v1"}}, "base_url=None"),
    ],
)
def test_answers_of_another_model_or_setting_are_refused(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    with AnswerJournal.for_eval(tmp_path, config(tmp_path), PROMPTS) as journal:
        journal.append(0, "a", 0, "first")
    before = (tmp_path / GENERATIONS).read_bytes()
    other = ModelEvalConfig(output_dir=str(tmp_path), **{"model_name": "m", **values})
    with pytest.raises(ConfigError) as info:
        AnswerJournal.for_eval(tmp_path, other, PROMPTS)
    assert "holds answers of another eval" in str(info.value) and message in str(info.value)
    assert (tmp_path / GENERATIONS).read_bytes() == before


def test_a_file_that_is_not_saved_answers_is_refused(tmp_path: Path) -> None:
    (tmp_path / GENERATIONS).write_text("something else\n")
    with pytest.raises(ConfigError, match="is not a file of saved answers"):
        AnswerJournal.for_eval(tmp_path, config(tmp_path), PROMPTS)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 5)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
hostile_lines = st.one_of(
    st.text(max_size=40).filter(lambda text: "\n" not in text and "\r" not in text),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {
            "index": st.one_of(st.integers(-2, 5), st.booleans(), st.text(max_size=2), st.none()),
            "sample": st.one_of(st.integers(-1, 2), st.booleans(), st.floats(0, 1)),
            "prompt_sha256": st.one_of(
                st.sampled_from([prompt_hash(p) for p in PROMPTS]), st.text(max_size=4)
            ),
            "completion": st.one_of(
                st.text(max_size=10), st.integers(), st.none(), st.lists(st.text())
            ),
        }
    ).map(json.dumps),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(hostile_lines, max_size=8))
def test_hostile_lines_fill_only_slots_they_match(tmp_path: Path, lines: list[str]) -> None:
    directory = tmp_path / f"case-{abs(hash(tuple(lines)))}"
    with AnswerJournal.for_eval(directory, config(directory), PROMPTS) as journal:
        journal.append(1, "b", 0, "kept")
    with (directory / GENERATIONS).open("a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
    answers = AnswerJournal.for_eval(directory, config(directory), PROMPTS).read(1)
    expected: list[str | None] = [None] * len(PROMPTS)
    for line in (directory / GENERATIONS).read_text(encoding="utf-8").split("\n")[1:]:
        slot = matching_slot(line)
        if slot is not None:
            expected[slot[0]] = slot[1]  # a later line wins
    assert answers == [[text] for text in expected]
    assert expected[1] is not None  # the saved answer, unless a later line replaced it


def matching_slot(line: str) -> tuple[int, str] | None:
    """The row a line answers (sample 0), if it is an answer line for one of PROMPTS."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    index, sample, text = entry.get("index"), entry.get("sample"), entry.get("completion")
    if type(index) is not int or type(sample) is not int or not isinstance(text, str):
        return None
    if not 0 <= index < len(PROMPTS) or sample != 0:
        return None
    return (index, text) if entry.get("prompt_sha256") == prompt_hash(PROMPTS[index]) else None


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.text(st.characters(codec=None)) | st.just("\ud800 lone"), min_size=3, max_size=3),
    st.one_of(st.none(), st.text(), st.integers()),
)
def test_any_completion_and_row_id_round_trip(
    tmp_path: Path, completions: list[str], row_id: Any
) -> None:
    directory = tmp_path / f"case-{abs(hash((tuple(completions), repr(row_id))))}"
    with AnswerJournal.for_eval(directory, config(directory), PROMPTS) as journal:
        for index, text in enumerate(completions):
            journal.append(index, row_id, 0, text)
    answers = AnswerJournal.for_eval(directory, config(directory), PROMPTS).read(1)
    assert answers == [[text] for text in completions]
