"""Loading the rows a run trains on (``data.source_kind``), then applying ``data.transforms``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evsys.config import DataConfig, InferenceSpec, TransformSpec
from evsys.data.hub import import_datasets, load_hub_dataset
from evsys.data.images import inline_image_files
from evsys.data.jsonl import read_jsonl_lines
from evsys.data.references import dataset_reference
from evsys.data.types import TargetFormat, detect_format, from_dict, task_row
from evsys.errors import DataError
from evsys.protocols import DataStore
from evsys.registry import TRANSFORMS
from evsys.task_verifiers import check_task_verifiers

Row = dict[str, Any]

# What `datasets.save_to_disk` leaves in a directory: a Dataset, or a DatasetDict of splits.
_SAVED_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
# The `datasets` builders that read local files. Any other name is a directory or a Hub id.
_LOCAL_BUILDERS = ("arrow", "csv", "json", "parquet", "text")


def load_rows(
    data: DataConfig,
    store: DataStore,
    *,
    path: str | None = None,
    judge: InferenceSpec | None = None,
) -> list[Row]:
    """The rows ``data`` names, as plain dicts, at most ``data.limit`` of them.

    ``path`` overrides where they are read from (``data.eval_path`` for held-out rows): the
    file of a jsonl/json source, the directory or data files of an hf_dataset source.
    ``judge``: the client that will judge harbor ``llm_judge`` tasks (None: they are refused).
    """
    if data.reference is not None and path is None:  # a dashboard dataset, from the cache
        cached = dataset_reference(data)
        assert cached is not None
        rows = read_jsonl_lines(cached.content)[: data.limit]
        where = f"data (dataset {data.reference})"
        return tasks_as_rows(rows, where=where, judge=judge)
    loader = _LOADERS[data.source_kind]
    rows = loader(data, store, path)[: data.limit]
    where = f"data ({path or data.path or data.source_kind})"
    if data.source_kind in ("jsonl", "json"):  # image files lie in images/ beside the file
        folder = resolve_path(path or data.path, store).parent
        rows = inline_image_files(rows, folder, where)
    return tasks_as_rows(rows, where=where, judge=judge)


def tasks_as_rows(rows: list[Row], *, where: str, judge: InferenceSpec | None = None) -> list[Row]:
    """Harbor tasks among ``rows`` as the rows training reads (:func:`task_row`), their
    verifiers checked now, so a task that cannot be scored fails the run before it starts."""
    if not any(detect_format(row) == TargetFormat.HARBOR_TASK for row in rows):
        return rows
    converted = []
    for index, row in enumerate(rows):
        if detect_format(row) == TargetFormat.HARBOR_TASK:
            try:
                row = task_row(from_dict(row))
            except DataError as exc:
                raise DataError(f"{where} row {index}: {exc}") from None
        converted.append(row)
    check_task_verifiers(converted, where, judge)
    return converted


def apply_transforms(rows: list[Row], specs: list[TransformSpec]) -> list[Row]:
    """Build each transform from the registry and run it on the rows, in order."""
    for spec in specs:
        transform = TRANSFORMS.build(spec.kind, spec.params)
        rows = transform(rows)
        if not isinstance(rows, list):
            raise DataError(
                f"transform '{spec.kind}' returned {type(rows).__name__}, expected a list of "
                "rows; a transform must return the rows it produces"
            )
    return rows


# -- one loader per source kind ---------------------------------------------------------------


def _load_jsonl(data: DataConfig, store: DataStore, path: str | None) -> list[Row]:
    return store.read_jsonl(path or data.path)


def _load_json(data: DataConfig, store: DataStore, path: str | None) -> list[Row]:
    content = store.read_json(path or data.path)
    where = resolve_path(path or data.path, store)
    if not isinstance(content, list):
        raise DataError(
            f"{where}: expected a JSON list of row objects, found {type(content).__name__}; "
            "use source_kind 'jsonl' for one object per line"
        )
    for index, row in enumerate(content):
        if not isinstance(row, dict):
            raise DataError(f"{where}: item {index} is {type(row).__name__}, expected an object")
    return content


def _load_in_memory(data: DataConfig, store: DataStore, path: str | None) -> list[Row]:
    if path is not None:
        raise DataError(
            f"source_kind 'in_memory' has no file to read, but a path was given ({path!r}); "
            "put held-out rows in eval.eval_data.rows instead of data.eval_path"
        )
    return copy.deepcopy(data.rows)


def _load_hf_dataset(data: DataConfig, store: DataStore, path: str | None) -> list[Row]:
    """A builder (json, csv, …) over local ``hf_data_files``, a local directory, or a Hub id.

    A name that is a directory under the data store is read from there; otherwise a Hub id
    (``name`` or ``owner/name``, checked by the schema) goes through ``datasets.load_dataset``,
    downloaded once and cached, or read from the cache offline (:mod:`evsys.data.hub`).
    """
    name = data.hf_dataset
    assert name is not None  # the schema requires it for this source kind
    if name in _LOCAL_BUILDERS:
        files = path or data.hf_data_files
        if files is None:
            raise DataError(
                f"data.hf_dataset={name!r} is a builder and reads local files: set "
                "data.hf_data_files (e.g. data/train.jsonl)"
            )
        dataset = _call_datasets(
            name, "load_dataset", name, data_files=_resolve_files(files, store), split=data.hf_split
        )
    elif (directory := resolve_path(path or name, store)).is_dir():
        if any((directory / marker).is_file() for marker in _SAVED_DATASET_MARKERS):
            loaded = _call_datasets(name, "load_from_disk", str(directory))
            dataset = _pick_split(loaded, data.hf_split, directory)
        else:  # a directory of data files; datasets infers the builder from their extension
            dataset = _call_datasets(
                name,
                "load_dataset",
                str(directory),
                data_files=data.hf_data_files,
                split=data.hf_split,
            )
    elif path is None and hub_dataset(data, store) is not None:  # lineage decides alike
        dataset = load_hub_dataset(name, data.hf_config, data.hf_split)
    elif path is not None:
        raise DataError(
            f"data.eval_path={path!r}: no directory {directory} exists; held-out rows of an "
            "hf_dataset source are a directory, or (a Hub dataset's other split) "
            "eval.eval_data with its own hf_dataset and hf_split"
        )
    else:
        raise DataError(
            f"data.hf_dataset={name!r}: no directory {directory} exists, and a Hub id is "
            "name or owner/name"
        )
    if data.limit is not None:
        dataset = dataset.select(range(min(data.limit, len(dataset))))
    return [dict(row) for row in dataset]


_LOADERS: dict[str, Callable[[DataConfig, DataStore, str | None], list[Row]]] = {
    "jsonl": _load_jsonl,
    "json": _load_json,
    "in_memory": _load_in_memory,
    "hf_dataset": _load_hf_dataset,
}


# -- hf_dataset helpers -----------------------------------------------------------------------


def hub_dataset(data: DataConfig, store: DataStore) -> str | None:
    """The Hub id ``data`` loads its rows from; None when they come from elsewhere (a builder
    over local files, a local directory, another source kind)."""
    name = data.hf_dataset
    if data.source_kind != "hf_dataset" or name is None or name in _LOCAL_BUILDERS:
        return None
    if resolve_path(name, store).is_dir() or name.count("/") > 1:  # a Hub id: name, owner/name
        return None
    return name


def resolve_path(path: str, store: DataStore) -> Path:
    """``path`` as the data store sees it (relative paths against a local store's root)."""
    # Only a local store has a directory to resolve against; elsewhere paths are as given.
    resolve = getattr(store, "resolve", None)
    return Path(resolve(path)) if resolve is not None else Path(path)


def _call_datasets(name: str | None, function: str, *args: Any, **kwargs: Any) -> Any:
    datasets = import_datasets()
    try:
        return getattr(datasets, function)(*args, **kwargs)
    except Exception as exc:  # datasets raises many types; each means "could not load it"
        raise DataError(
            f"data.hf_dataset={name!r}: datasets.{function} failed ({type(exc).__name__}: {exc})"
        ) from exc


def _resolve_files(files: str | list[str], store: DataStore) -> str | list[str]:
    if isinstance(files, str):
        return str(resolve_path(files, store))
    return [str(resolve_path(f, store)) for f in files]


def _pick_split(loaded: Any, split: str, directory: Path) -> Any:
    """``load_from_disk`` returns a Dataset, or a DatasetDict that holds the split."""
    from datasets import DatasetDict  # already imported by import_datasets

    if not isinstance(loaded, DatasetDict):
        return loaded
    if split not in loaded:
        raise DataError(
            f"data.hf_split={split!r}: {directory} has no such split; "
            f"it holds: {', '.join(sorted(loaded.keys()))}"
        )
    return loaded[split]
