"""evsys.data: stores, source loaders, transforms, Harbor types and the bundled datasets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from evsys.config import DataConfig, TransformSpec
from evsys.data import types as harbor
from evsys.data.jsonl import parse_jsonl, read_jsonl_lines
from evsys.data.sources import apply_transforms, load_rows
from evsys.data.stores import InMemoryDataStore, LocalDataStore
from evsys.errors import DataError, MissingDependencyError
from evsys.protocols import DataStore
from evsys.registry import DATA_STORES, TRANSFORMS

REPO = Path(__file__).resolve().parents[1]
ROWS = [{"prompt": "What is 1 + 1?", "answer": "2"}, {"prompt": "What is 2 + 3?", "answer": "5"}]


@pytest.fixture
def local(tmp_path: Path) -> LocalDataStore:
    return LocalDataStore(root=str(tmp_path))


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the Arrow cache that load_dataset writes inside the test's directory."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


# -- registries -------------------------------------------------------------------------------


def test_registries_list_the_builtins():
    assert {"identity", "jsonl_to_chat"} <= set(TRANSFORMS.names())
    assert {"local", "in_memory"} <= set(DATA_STORES.names())
    assert DATA_STORES.get("local") is LocalDataStore
    store = DATA_STORES.build("in_memory", {"files": {}})
    assert isinstance(store, DataStore)
    assert isinstance(DATA_STORES.build("local", {}), DataStore)


def test_store_config_rejects_unknown_params():
    with pytest.raises(ValidationError, match="roots"):
        LocalDataStore(roots="/tmp")


# -- local store ------------------------------------------------------------------------------


def test_local_round_trip_and_atomic_write(local: LocalDataStore, tmp_path: Path):
    local.write_jsonl("sub/rows.jsonl", ROWS)
    local.write_json("sub/meta.json", {"n": 2, "name": "é"})
    assert local.read_jsonl("sub/rows.jsonl") == ROWS
    assert local.read_json("sub/meta.json") == {"n": 2, "name": "é"}
    assert (tmp_path / "sub/rows.jsonl").read_text().count("\n") == 2
    # Overwrite, then check only the two target files remain: no temp file left behind.
    local.write_jsonl("sub/rows.jsonl", ROWS[:1])
    assert local.read_jsonl("sub/rows.jsonl") == ROWS[:1]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["meta.json", "rows.jsonl"]


def test_local_failed_write_leaves_old_file_and_no_temp(local: LocalDataStore, tmp_path: Path):
    local.write_json("a.json", {"ok": True})
    with pytest.raises(DataError, match="a.json"):
        local.write_json("a.json", {"bad": object()})
    assert local.read_json("a.json") == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_local_paths_exists_and_list(local: LocalDataStore, tmp_path: Path):
    local.write_jsonl("runs/a1.jsonl", ROWS)
    local.write_jsonl("runs/b.jsonl", ROWS)
    local.write_json("top.json", [])
    assert local.resolve("runs/b.jsonl") == tmp_path / "runs/b.jsonl"
    absolute = tmp_path / "top.json"
    assert local.resolve(str(absolute)) == absolute
    assert local.read_json(str(absolute)) == []
    assert local.exists("runs/a1.jsonl") and not local.exists("runs/zzz.jsonl")
    assert local.list("runs/") == ["runs/a1.jsonl", "runs/b.jsonl"]
    assert local.list("runs/a") == ["runs/a1.jsonl"]
    assert local.list() == ["runs/a1.jsonl", "runs/b.jsonl", "top.json"]
    assert local.list("nowhere/") == []


def test_local_root_defaults_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n')
    assert LocalDataStore().read_jsonl("x.jsonl") == [{"a": 1}]


def test_broken_jsonl_line_names_file_and_line(local: LocalDataStore, tmp_path: Path):
    lines = ['{"a": 1}', "", '{"a": 2}', '{"a": 3 "b": 4}', '{"a": 5}']
    (tmp_path / "x.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        local.read_jsonl("x.jsonl")
    # Line 4 counts the blank line 2: numbers are physical lines, as an editor shows them.
    assert str(err.value) == (
        f"{tmp_path / 'x.jsonl'}:4: invalid JSON (Expecting ',' delimiter: column 9)"
    )


def test_blank_lines_are_skipped(local: LocalDataStore, tmp_path: Path):
    (tmp_path / "x.jsonl").write_text('\n{"a": 1}\n   \n{"a": 2}\n\n')
    assert local.read_jsonl("x.jsonl") == [{"a": 1}, {"a": 2}]


def test_non_object_line_is_an_error(local: LocalDataStore, tmp_path: Path):
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"x\.jsonl:2: expected a JSON object per line, found list"):
        local.read_jsonl("x.jsonl")


def test_missing_file_names_resolved_path(local: LocalDataStore, tmp_path: Path):
    with pytest.raises(DataError, match=str(tmp_path / "nope.jsonl")):
        local.read_jsonl("nope.jsonl")
    with pytest.raises(DataError, match="no such file"):
        local.read_json("nope.json")


def test_broken_json_file_names_line(local: LocalDataStore, tmp_path: Path):
    (tmp_path / "x.json").write_text('[\n  {"a": 1},\n  {"a": }\n]\n')
    with pytest.raises(DataError, match=r"x\.json:3: invalid JSON"):
        local.read_json("x.json")


def test_parse_jsonl_keeps_unicode_line_separators():
    text = json.dumps({"t": "a\u2028b"}, ensure_ascii=False) + "\n"
    assert parse_jsonl(text, "inline") == [{"t": "a\u2028b"}]
    with pytest.raises(DataError, match="^inline:1: "):
        parse_jsonl("nope\n", "inline")


# -- in-memory store --------------------------------------------------------------------------


def test_in_memory_store():
    store = InMemoryDataStore(files={"a.jsonl": ROWS, "meta.json": {"k": 1}})
    rows = store.read_jsonl("./a.jsonl")
    rows[0]["prompt"] = "changed"  # reads are copies
    assert store.read_jsonl("a.jsonl") == ROWS
    assert store.read_json("meta.json") == {"k": 1}
    store.write_jsonl("out/b.jsonl", ROWS[:1])
    store.write_json("out/c.json", [1])
    assert store.exists("out/b.jsonl") and not store.exists("zzz")
    assert store.list("out/") == ["out/b.jsonl", "out/c.json"]
    assert store.list() == ["a.jsonl", "meta.json", "out/b.jsonl", "out/c.json"]
    with pytest.raises(DataError, match=r"^missing\.jsonl: no such file .*a\.jsonl, meta\.json"):
        store.read_jsonl("missing.jsonl")
    with pytest.raises(DataError, match=r"^meta\.json:"):
        store.read_jsonl("meta.json")


# -- load_rows --------------------------------------------------------------------------------


def test_load_jsonl_with_limit_and_path_override(local: LocalDataStore):
    local.write_jsonl("train.jsonl", ROWS)
    local.write_jsonl("eval.jsonl", ROWS[1:])
    data = DataConfig(source_kind="jsonl", path="train.jsonl")
    assert load_rows(data, local) == ROWS
    assert load_rows(data, local, path="eval.jsonl") == ROWS[1:]
    assert load_rows(data.model_copy(update={"limit": 1}), local) == ROWS[:1]


def test_load_json_list_of_objects(local: LocalDataStore):
    local.write_json("rows.json", ROWS)
    assert load_rows(DataConfig(source_kind="json", path="rows.json"), local) == ROWS
    local.write_json("obj.json", {"rows": ROWS})
    with pytest.raises(
        DataError, match="obj.json: expected a JSON list of row objects, found dict"
    ):
        load_rows(DataConfig(source_kind="json", path="obj.json"), local)
    local.write_json("mixed.json", [{"a": 1}, 2])
    with pytest.raises(DataError, match="mixed.json: item 1 is int"):
        load_rows(DataConfig(source_kind="json", path="mixed.json"), local)


def test_load_in_memory_returns_copies():
    data = DataConfig(source_kind="in_memory", rows=ROWS, limit=1)
    rows = load_rows(data, InMemoryDataStore())
    assert rows == ROWS[:1]
    rows[0]["prompt"] = "changed"
    assert data.rows[0]["prompt"] == "What is 1 + 1?"


def test_load_hf_json_builder_from_local_file(local: LocalDataStore, hf_cache: None):
    local.write_jsonl("data/train.jsonl", ROWS)
    data = DataConfig(source_kind="hf_dataset", hf_dataset="json", hf_data_files="data/train.jsonl")
    rows = load_rows(data, local)
    assert rows == ROWS
    assert all(type(r) is dict for r in rows)
    assert load_rows(data.model_copy(update={"limit": 1}), local) == ROWS[:1]


def test_load_hf_saved_directory(local: LocalDataStore, tmp_path: Path, hf_cache: None):
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    splits = {
        "train": datasets.Dataset.from_list(ROWS),
        "test": datasets.Dataset.from_list(ROWS[:1]),
    }
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "saved_dict"))

    assert load_rows(DataConfig(source_kind="hf_dataset", hf_dataset="saved"), local) == ROWS
    by_split = DataConfig(source_kind="hf_dataset", hf_dataset="saved_dict", hf_split="test")
    assert load_rows(by_split, local) == ROWS[:1]
    with pytest.raises(DataError, match="hf_split='dev'.*it holds: test, train"):
        load_rows(by_split.model_copy(update={"hf_split": "dev"}), local)


def test_load_hf_builder_needs_data_files(local: LocalDataStore, hf_cache: None):
    with pytest.raises(DataError, match="'json' is a builder .* set data.hf_data_files"):
        load_rows(DataConfig(source_kind="hf_dataset", hf_dataset="json"), local)


def test_load_hf_wraps_datasets_errors(local: LocalDataStore, hf_cache: None):
    data = DataConfig(source_kind="hf_dataset", hf_dataset="json", hf_data_files="absent.jsonl")
    with pytest.raises(DataError, match="hf_dataset='json': datasets.load_dataset failed"):
        load_rows(data, local)


def test_load_hf_without_datasets_says_how_to_install(
    local: LocalDataStore, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    data = DataConfig(source_kind="hf_dataset", hf_dataset="json", hf_data_files="x.jsonl")
    with pytest.raises(MissingDependencyError, match=r"pip install 'evsys\[hf\]'"):
        load_rows(data, local)


# -- transforms -------------------------------------------------------------------------------


def test_identity_copies_rows():
    rows = [dict(r) for r in ROWS]
    out = apply_transforms(rows, [TransformSpec(kind="identity")])
    assert out == ROWS
    out[0]["prompt"] = "changed"
    assert rows[0]["prompt"] == "What is 1 + 1?"


def test_jsonl_to_chat_builds_messages():
    rows = [{"id": "r1", "prompt": "Hi?", "answer": 42}]
    spec = TransformSpec(kind="jsonl_to_chat", params={"system_prompt": "Be brief."})
    [out] = apply_transforms(rows, [spec])
    assert out == {
        "id": "r1",
        "prompt": "Hi?",
        "answer": 42,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi?"},
            {"role": "assistant", "content": "<answer>42</answer>"},
        ],
        "target_assistant": "<answer>42</answer>",
    }
    assert rows == [{"id": "r1", "prompt": "Hi?", "answer": 42}]  # input untouched


def test_jsonl_to_chat_custom_keys_template_and_passthrough():
    chat_row = {"messages": [{"role": "user", "content": "x"}], "target_assistant": "y"}
    rows = [{"q": "2+2?", "a": "4"}, chat_row]
    params = {"prompt_key": "q", "answer_key": "a", "answer_template": '{"n": {answer}}'}
    out = apply_transforms(
        rows, [TransformSpec(kind="identity"), TransformSpec(kind="jsonl_to_chat", params=params)]
    )
    assert out[0]["messages"] == [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": '{"n": 4}'},
    ]
    assert out[1] == chat_row


def test_jsonl_to_chat_missing_key_names_row_and_keys():
    rows = [{"prompt": "a", "answer": "b"}, {"question": "c", "answer": "d"}]
    with pytest.raises(DataError, match=r"row 1 has no 'prompt' key \(it has: question, answer\)"):
        apply_transforms(rows, [TransformSpec(kind="jsonl_to_chat")])


def test_jsonl_to_chat_template_needs_answer_slot():
    with pytest.raises(ValidationError, match=r"answer_template .* has no `\{answer\}`"):
        TRANSFORMS.build("jsonl_to_chat", {"answer_template": "<answer></answer>"})


def test_transform_must_return_a_list(clean_registries: None):
    @TRANSFORMS.register("forgets_to_return")
    class ForgetsToReturn:
        def __call__(self, rows):
            rows.append({})

    with pytest.raises(DataError, match="'forgets_to_return' returned NoneType"):
        apply_transforms(list(ROWS), [TransformSpec(kind="forgets_to_return")])


# -- Harbor types -----------------------------------------------------------------------------

CHAT = harbor.ChatMessagesRow(
    messages=[
        {
            "role": "user",
            "content": [
                harbor.text_block("What is this?"),
                harbor.image_url_block("https://x/y.png"),
            ],
        },
        {"role": "assistant", "content": "A cat."},
    ],
    target_assistant="A cat.",
    metadata={"source": "unit"},
)
TASKS = [
    harbor.HarborTask(
        "t1",
        "Call the tool.",
        harbor.InProcessVerifier("tool_match", "GMAIL_SEND_EMAIL", {"strict": True}),
    ),
    harbor.HarborTask(
        "t2",
        "Fix the bug.",
        harbor.E2BVerifier("FROM python:3.11", "pytest -q", "print(1)"),
        {"level": 2},
    ),
    harbor.HarborTask(
        "t3", "Write a haiku.", harbor.LLMJudgeVerifier("claude-x", "5-7-5 syllables")
    ),
    harbor.HarborTask(
        "t4", "Write add(a, b).", harbor.SandboxVerifier("assert add(1, 2) == 3", 2.0)
    ),
]
EXAMPLE = harbor.PromptExample(inputs={"question": "2+2?"}, expected="4")


@pytest.mark.parametrize("obj", [CHAT, *TASKS, EXAMPLE], ids=lambda o: type(o).__name__)
def test_harbor_round_trip(obj):
    as_dict = harbor.to_dict(obj)
    assert json.loads(json.dumps(as_dict)) == as_dict  # JSON-ready
    assert harbor.from_dict(as_dict) == obj
    assert harbor.detect_format(as_dict) == obj.format.value == harbor.detect_format(obj)


def test_harbor_dict_shapes():
    assert harbor.to_dict(TASKS[0])["verifier"] == {
        "fn_name": "tool_match",
        "expected": "GMAIL_SEND_EMAIL",
        "params": {"strict": True},
        "kind": "in_process",
    }
    assert harbor.TargetFormat.HARBOR_TASK == "harbor_task"


def test_detect_format():
    assert harbor.detect_format({"messages": []}) == "chat_messages"
    assert harbor.detect_format({"instruction": "x", "verifier": {"kind": "e2b"}}) == "harbor_task"
    assert harbor.detect_format({"inputs": {"q": 1}}) == "prompt_dataset"
    assert harbor.detect_format({"prompt": "x", "answer": "y"}) == "unknown"


def test_from_dict_folds_extra_keys_into_metadata_and_derives_target():
    row = apply_transforms(
        [{"id": "r1", "prompt": "p", "answer": "a"}], [TransformSpec(kind="jsonl_to_chat")]
    )[0]
    typed = harbor.from_dict(row)
    assert typed.target_assistant == "<answer>a</answer>"
    assert typed.metadata == {"id": "r1", "prompt": "p", "answer": "a"}
    derived = harbor.from_dict({"messages": [{"role": "assistant", "content": "hi"}]})
    assert derived.target_assistant == "hi"


def test_from_dict_errors():
    with pytest.raises(DataError, match="matches no Harbor format.*prompt, answer"):
        harbor.from_dict({"prompt": "x", "answer": "y"})
    with pytest.raises(
        DataError, match="verifier.kind='docker' .* in_process, e2b, sandbox, llm_judge"
    ):
        harbor.from_dict({"task_id": "t", "instruction": "x", "verifier": {"kind": "docker"}})
    with pytest.raises(DataError, match="LLMJudgeVerifier: missing rubric"):
        harbor.from_dict(
            {
                "task_id": "t",
                "instruction": "x",
                "verifier": {"kind": "llm_judge", "judge_model": "m"},
            }
        )
    with pytest.raises(DataError, match="E2BVerifier: unknown keys test_py"):
        harbor.verifier_from_dict(
            {"kind": "e2b", "dockerfile": "d", "test_sh": "t", "test_py": "x"}
        )
    with pytest.raises(DataError, match="HarborTask: missing task_id"):
        harbor.from_dict(
            {
                "instruction": "x",
                "verifier": {"kind": "llm_judge", "judge_model": "m", "rubric": "r"},
            }
        )


def test_image_helpers():
    url_block = harbor.image_url_block("https://x/y.png", detail="low")
    assert url_block == {
        "type": "image_url",
        "image_url": {"url": "https://x/y.png", "detail": "low"},
    }
    b64_block = harbor.image_base64_block("image/png", "AAAA")
    assert b64_block == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert harbor.block_to_image_src(url_block) == "https://x/y.png"
    assert harbor.block_to_image_src(b64_block) == "data:image/png;base64,AAAA"
    assert harbor.block_to_image_src({"type": "image_url", "image_url": "https://z"}) == "https://z"
    with pytest.raises(DataError, match="type 'text' is not an image"):
        harbor.block_to_image_src(harbor.text_block("hi"))
    assert harbor.has_images(CHAT) and harbor.has_images(harbor.to_dict(CHAT))
    assert not harbor.has_images(TASKS[0])
    text_only = {"messages": [{"role": "user", "content": [harbor.text_block("x")]}]}
    assert not harbor.has_images(text_only)
    assert not harbor.has_images({"inputs": {}, "metadata": {"thumb": b64_block}})
    assert harbor.has_images({"inputs": {"photo": b64_block}})


def test_iter_jsonl_mixed_formats(tmp_path: Path):
    path = tmp_path / "mixed.jsonl"
    objs = [CHAT, TASKS[1], EXAMPLE]
    path.write_text("".join(json.dumps(harbor.to_dict(o)) + "\n" for o in objs))
    assert list(harbor.iter_jsonl(path)) == objs
    with path.open("a") as handle:
        handle.write("\n" + json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(DataError, match=r"mixed\.jsonl:5: row matches no Harbor format"):
        list(harbor.iter_jsonl(path))
    path.write_text('{"inputs": {}}\n{broken\n')
    with pytest.raises(DataError, match=r"mixed\.jsonl:2: invalid JSON"):
        list(harbor.iter_jsonl(path))


# -- bundled datasets -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tool_selection", "arithmetic"])
def test_bundled_dataset_loads_with_disjoint_splits(name: str):
    store = LocalDataStore(root=str(REPO / "data"))
    train = load_rows(DataConfig(path=f"{name}/train.jsonl"), store)
    test = load_rows(DataConfig(path=f"{name}/test.jsonl"), store)
    assert (len(train), len(test)) == {"tool_selection": (160, 40), "arithmetic": (200, 50)}[name]
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    assert len({r["id"] for r in train + test}) == len(train) + len(test)
    for path in (REPO / "data" / name).glob("*.jsonl"):
        assert path.stat().st_size < 100_000


def test_tool_selection_rows_are_consistent():
    train = read_jsonl_lines(REPO / "data/tool_selection/train.jsonl")
    test = read_jsonl_lines(REPO / "data/tool_selection/test.jsonl")
    for row in train + test:
        assert set(row) == {"id", "prompt", "answer", "toolkit"}
        assert row["answer"].startswith(row["toolkit"].upper() + "_")
    assert {r["answer"] for r in train} == {r["answer"] for r in test}
    assert len({r["answer"] for r in train}) == 10


def test_arithmetic_answers_are_right():
    for row in read_jsonl_lines(REPO / "data/arithmetic/train.jsonl"):
        a, op, b = row["prompt"].removeprefix("What is ").removesuffix("?").split()
        assert int(row["answer"]) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0


@pytest.mark.parametrize("name", ["tool_selection", "arithmetic"])
def test_generators_reproduce_the_shipped_files(name: str, tmp_path: Path):
    script = REPO / "data" / name / "make.py"
    subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)], check=True, capture_output=True
    )
    for split in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / split).read_bytes() == (REPO / "data" / name / split).read_bytes()
