"""data.hf_dataset=<owner/name>: Hub datasets through `datasets`, read from its cache offline.

No network: the cache is written by datasets' own builder (what a download leaves behind), and
every run here is offline (HF_HUB_OFFLINE=1), so a cache miss must be a clear error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_evsys
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from evsys.config import DataConfig
from evsys.data.sources import load_rows
from evsys.data.stores import LocalDataStore
from evsys.errors import DataError

ROWS = [
    {"prompt": "What is 1 + 1?", "answer": "2"},
    {"prompt": "What is 2 + 3?", "answer": "5"},
    {"prompt": "What is 4 + 4?", "answer": "8"},
]


def cache_hub_dataset(cache: Path, repo_id: str, rows: list[dict], tmp_path: Path) -> None:
    """Leave ``repo_id`` in the datasets cache ``cache`` as a download would: datasets' own
    json builder prepares it into <owner>___<name>/default/0.0.0/<hash>, the place
    load_dataset(repo_id) writes after a download and reads offline."""
    from datasets.packaged_modules.json.json import Json

    source = tmp_path / f"{repo_id.replace('/', '_')}.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    owner, name = repo_id.split("/")
    builder = Json(dataset_name=name, data_files={"train": str(source)}, cache_dir=str(tmp_path))
    builder.download_and_prepare(
        output_dir=str(cache / f"{owner}___{name}" / "default" / "0.0.0" / "0123456789abcdef")
    )


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A datasets cache of this test's own, with datasets told it is offline."""
    datasets = pytest.importorskip("datasets")
    cache = tmp_path / "hf_datasets_cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


def test_a_cached_hub_dataset_loads_offline(offline_cache: Path, tmp_path: Path):
    cache_hub_dataset(offline_cache, "owner/name", ROWS, tmp_path)
    store = LocalDataStore(root=str(tmp_path / "store"))
    data = DataConfig(source_kind="hf_dataset", hf_dataset="owner/name")
    assert load_rows(data, store) == ROWS
    assert load_rows(data.model_copy(update={"limit": 2}), store) == ROWS[:2]
    with pytest.raises(DataError, match="'owner/name'.*split"):
        load_rows(data.model_copy(update={"hf_split": "test"}), store)


def test_a_cache_miss_offline_names_the_dataset_and_the_cache(offline_cache: Path, tmp_path: Path):
    store = LocalDataStore(root=str(tmp_path / "store"))
    data = DataConfig(source_kind="hf_dataset", hf_dataset="nobody/absent")
    with pytest.raises(DataError) as caught:
        load_rows(data, store)
    message = str(caught.value)
    assert "data.hf_dataset='nobody/absent': not in the local cache" in message
    assert str(offline_cache) in message
    assert "HF_HUB_OFFLINE" in message


def test_a_local_directory_of_that_name_comes_before_the_hub(offline_cache: Path, tmp_path: Path):
    cache_hub_dataset(offline_cache, "owner/name", ROWS, tmp_path)
    store = LocalDataStore(root=str(tmp_path / "store"))
    directory = tmp_path / "store" / "owner" / "name"
    directory.mkdir(parents=True)
    (directory / "train.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    data = DataConfig(source_kind="hf_dataset", hf_dataset="owner/name")
    assert load_rows(data, store) == ROWS[:1]


def test_the_lineage_of_a_hub_dataset_changes_with_its_cached_data(
    offline_cache: Path, tmp_path: Path
):
    """Two caches of ``owner/name`` with different rows: different sha256s; a miss is an
    entry with its error."""
    from types import SimpleNamespace

    from evsys.data.lineage import data_lineage

    store = LocalDataStore(root=str(tmp_path / "store"))
    data = DataConfig(source_kind="hf_dataset", hf_dataset="owner/name")
    config = SimpleNamespace(
        data=data,
        continual=None,
        eval=SimpleNamespace(eval_data=None),
        metadata=SimpleNamespace(benchmark=[]),
    )
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
    cache_hub_dataset(offline_cache, "owner/name", ROWS, tmp_path / "a")
    (first,) = data_lineage(config, store)
    assert first == {
        "role": "data",
        "source": "hub",
        "id": "owner/name",
        "config": None,
        "split": "train",
        "sha256": first["sha256"],
    }
    assert len(first["sha256"]) == 64
    import shutil

    shutil.rmtree(offline_cache)
    cache_hub_dataset(offline_cache, "owner/name", ROWS[:2], tmp_path / "b")
    (second,) = data_lineage(config, store)
    assert second["sha256"] != first["sha256"]

    config.data = data.model_copy(update={"hf_dataset": "nobody/absent"})
    (missing,) = data_lineage(config, store)
    assert missing["sha256"] is None and "not in the local cache" in missing["error"]


def test_a_deeper_path_that_is_no_directory_is_not_sent_to_the_hub(tmp_path: Path):
    store = LocalDataStore(root=str(tmp_path))
    data = DataConfig(source_kind="hf_dataset", hf_dataset="a/b/c")
    with pytest.raises(DataError, match="no directory .* a Hub id is name or owner/name"):
        load_rows(data, store)
    hub = DataConfig(source_kind="hf_dataset", hf_dataset="owner/name")
    with pytest.raises(DataError, match="data.eval_path='owner/test': no directory"):
        load_rows(hub, store, path="owner/test")


# -- hostile names are refused by the schema --------------------------------------------------

PLAIN = "abcxyzABCXYZ0189-_."
ALLOWED = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./")
HOSTILE = st.one_of(
    st.builds(lambda s: "../" + s, st.text(PLAIN, max_size=8)),
    st.builds(lambda s: "/" + s, st.text(PLAIN, max_size=8)),
    st.builds(lambda s: "${" + s + "}", st.text(min_size=0, max_size=8)),
    st.builds(lambda s: "owner/" + s + "\u202e", st.text(PLAIN, max_size=8)),
    # text with at least one character outside the plain ASCII alphabet
    st.text(min_size=1, max_size=12).filter(lambda s: not set(s) <= ALLOWED),
    st.builds(lambda a, b: f"{a}..{b}", st.text(PLAIN, max_size=4), st.text(PLAIN, max_size=4)),
)


@given(name=HOSTILE)
def test_hostile_hf_names_are_refused_by_validation(name: str):
    with pytest.raises(ValidationError, match="not a plain name"):
        DataConfig(source_kind="hf_dataset", hf_dataset=name)
    with pytest.raises(ValidationError, match="hf_config"):
        DataConfig(source_kind="hf_dataset", hf_dataset="owner/name", hf_config=name)


@given(
    owner=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
)
def test_plain_hub_ids_are_accepted(owner: str, name: str):
    assert DataConfig(source_kind="hf_dataset", hf_dataset=f"{owner}/{name}").hf_dataset


def test_import_evsys_does_not_import_datasets():
    code = "import sys, evsys, evsys.data.sources; print('datasets' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


# -- the CLI, offline, with the mock backend --------------------------------------------------


def test_cli_trains_on_a_cached_hub_dataset_offline_and_a_miss_exits_2(
    workdir: Path, tmp_path: Path
):
    pytest.importorskip("datasets")
    home = tmp_path / "hf_home"
    cache_hub_dataset(home / "datasets", "owner/name", ROWS, tmp_path)
    offline = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    source = ("backend=mock", "data.source_kind=hf_dataset", "data.eval_path=null")

    done = run_evsys(*source, "data.hf_dataset=owner/name", cwd=workdir, env=offline)
    assert done.returncode == 0, done.stdout + done.stderr
    (predictions,) = (workdir / "outputs").glob("runs/*/*/predictions.jsonl")
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [line["target"] for line in lines] == [row["answer"] for row in ROWS]
    # Its lineage names the Hub dataset and the sha256 of the cached copy.
    record = json.loads((predictions.parent / "run_result.json").read_text())
    (hub,) = [entry for entry in record["data_lineage"] if entry["source"] == "hub"]
    assert hub["id"] == "owner/name" and hub["split"] == "train" and hub["config"] is None
    assert hub["role"] == "data" and len(hub["sha256"]) == 64 and "error" not in hub

    missing = run_evsys(*source, "data.hf_dataset=nobody/absent", cwd=workdir, env=offline)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    output = missing.stdout + missing.stderr
    assert "data.hf_dataset='nobody/absent': not in the local cache" in output
    assert str(home / "datasets") in output
    assert "Traceback" not in output

    hostile = run_evsys(*source, "data.hf_dataset=../x", cwd=workdir, env=offline)
    assert hostile.returncode == 2
    assert "not a plain name" in hostile.stdout + hostile.stderr
    assert "Traceback" not in hostile.stdout + hostile.stderr
