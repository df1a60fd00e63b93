"""The built-in log stores write files that their readers (json, TensorBoard) read back."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from evsys.errors import ConfigError
from evsys.log_stores.jsonl import JsonlLogStore
from evsys.log_stores.multiplex import MultiplexLogStore
from evsys.protocols import LogStore
from evsys.registry import LOG_STORES

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed"
)


class Float32Like:
    """Stands in for a numpy/torch scalar: not a float, but has ``__float__``."""

    def __float__(self) -> float:
        return 0.75


def read_events(log_dir: Path):
    """TensorBoard's own reader over ``log_dir``, loaded."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return accumulator


def text_of(accumulator, tag: str) -> tuple[int, str]:
    (event,) = accumulator.Tensors(tag)
    return event.step, event.tensor_proto.string_val[0].decode()


def test_registry_lists_the_builtin_log_stores():
    assert {"jsonl", "tensorboard", "multiplex"} <= set(LOG_STORES.names())


# -- jsonl ------------------------------------------------------------------------------------


def test_jsonl_writes_one_line_per_call(tmp_path):
    store = LOG_STORES.build("jsonl", {}, run_dir=tmp_path)
    assert isinstance(store, LogStore)
    store.log_metrics({"loss": 0.5, "acc": Float32Like()}, step=1)
    store.log_scalar("loss", 0.25, step=2)
    store.log_scalar("loss", math.nan, step=3)
    store.close()

    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert lines[0]["loss"] == 0.5 and lines[0]["acc"] == 0.75
    assert set(lines[1]) == {"step", "time", "loss"} and lines[1]["loss"] == 0.25
    assert math.isnan(lines[2]["loss"])  # kept as NaN, not turned into null
    assert all(isinstance(line["time"], float) for line in lines)


def test_jsonl_lines_are_on_disk_before_close(tmp_path):
    store = JsonlLogStore(log_dir=str(tmp_path / "logs"))
    store.log_scalar("loss", 1.0, step=0)
    assert json.loads((tmp_path / "logs" / "metrics.jsonl").read_text())["loss"] == 1.0
    store.close()


def test_jsonl_hparams_and_artifacts(tmp_path):
    store = JsonlLogStore(run_dir=tmp_path)
    store.log_hyperparams({"lr": 1e-4, "model": "qwen", "out": tmp_path})
    store.log_hyperparams({"seed": 3})  # merged into the earlier ones
    store.log_artifact("final_checkpoint", "/ckpt/final")
    store.log_artifact("adapter", "/ckpt/adapter")
    store.close()

    assert json.loads((tmp_path / "hparams.json").read_text()) == {
        "lr": 1e-4,
        "model": "qwen",
        "out": str(tmp_path),
        "seed": 3,
    }
    assert json.loads((tmp_path / "artifacts.json").read_text()) == {
        "final_checkpoint": "/ckpt/final",
        "adapter": "/ckpt/adapter",
    }
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files behind


def test_jsonl_appends_across_reopen(tmp_path):
    for step in range(2):
        store = JsonlLogStore(run_dir=tmp_path)
        store.log_scalar("loss", float(step), step=step)
        store.log_artifact(f"ckpt{step}", f"/c/{step}")
        store.close()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((tmp_path / "artifacts.json").read_text()) == {
        "ckpt0": "/c/0",
        "ckpt1": "/c/1",
    }


def test_jsonl_rejects_reserved_metric_names(tmp_path):
    store = JsonlLogStore(run_dir=tmp_path)
    with pytest.raises(ValueError, match="reserved"):
        store.log_metrics({"step": 1.0}, step=0)
    store.close()


@pytest.mark.parametrize("kind", ["jsonl", pytest.param("tensorboard", marks=needs_tensorboard)])
def test_missing_log_dir_without_run_dir_is_a_config_error(kind):
    with pytest.raises(ConfigError, match="log_dir"):
        LOG_STORES.build(kind, {}, run_dir=None)


def test_unknown_param_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="logdir"):
        LOG_STORES.build("jsonl", {"logdir": "x"}, run_dir=tmp_path)


# -- tensorboard ------------------------------------------------------------------------------


@needs_tensorboard
def test_tensorboard_scalars_read_back_exactly(tmp_path):
    store = LOG_STORES.build("tensorboard", {}, run_dir=tmp_path)
    assert isinstance(store, LogStore)
    store.log_hyperparams({"lr": 0.001, "backend": "mock"})
    for step, loss in enumerate([1.0, 0.5, 0.25]):  # float32-exact, so equality is exact
        store.log_metrics({"train/loss": loss, "train/acc": step / 4}, step=step)
    store.log_scalar("eval/exact_match", 0.75, step=2)
    store.log_artifact("final_checkpoint", "/ckpt/final")
    store.close()

    events = read_events(tmp_path / "tensorboard")
    loss = events.Scalars("train/loss")
    assert [(e.step, e.value) for e in loss] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert [e.value for e in events.Scalars("train/acc")] == [0.0, 0.25, 0.5]
    assert [(e.step, e.value) for e in events.Scalars("eval/exact_match")] == [(2, 0.75)]

    step, hparams = text_of(events, "hparams")
    assert step == 0 and json.loads(hparams) == {"lr": 0.001, "backend": "mock"}
    # Written at the last step, not step 0: a backwards step would make the reader drop data.
    assert text_of(events, "artifacts/final_checkpoint") == (2, "/ckpt/final")


@needs_tensorboard
def test_tensorboard_explicit_log_dir_and_clear_error_for_non_numbers(tmp_path):
    store = LOG_STORES.build("tensorboard", {"log_dir": str(tmp_path / "tb"), "flush_secs": 1})
    with pytest.raises(TypeError, match="metric 'note' must be a number"):
        store.log_metrics({"note": "hello"}, step=0)
    store.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


@needs_tensorboard
def test_tensorboard_flush_secs_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="flush_secs"):
        LOG_STORES.build("tensorboard", {"flush_secs": 0}, run_dir=tmp_path)


# -- multiplex --------------------------------------------------------------------------------


@needs_tensorboard
def test_multiplex_fans_out_and_closes_every_child(tmp_path):
    store = LOG_STORES.build(
        "multiplex",
        {"stores": [{"kind": "jsonl"}, {"kind": "tensorboard", "params": {"flush_secs": 1}}]},
        run_dir=tmp_path,
    )
    jsonl_child, tb_child = store.stores
    store.log_hyperparams({"seed": 7})
    store.log_metrics({"loss": 0.5}, step=0)
    store.log_scalar("loss", 0.25, step=1)
    store.log_artifact("final_checkpoint", "/ckpt/final")
    store.close()

    for child in (jsonl_child, tb_child):  # a closed store refuses to log
        with pytest.raises((OSError, ValueError)):
            child.log_scalar("loss", 0.0, step=2)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in lines] == [0.5, 0.25]
    assert json.loads((tmp_path / "hparams.json").read_text()) == {"seed": 7}
    events = read_events(tmp_path / "tensorboard")
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(0, 0.5), (1, 0.25)]
    assert json.loads(text_of(events, "hparams")[1]) == {"seed": 7}


def test_multiplex_closes_all_children_then_raises_the_first_error(tmp_path):
    class Failing:
        def __init__(self, message):
            self.message, self.closed = message, False

        def close(self):
            self.closed = True
            raise RuntimeError(self.message)

    store = MultiplexLogStore(stores=[{"kind": "jsonl"}], run_dir=tmp_path)
    first, second = Failing("first"), Failing("second")
    store.stores = [first, store.stores[0], second]
    with pytest.raises(RuntimeError, match="first"):
        store.close()
    assert first.closed and second.closed
    with pytest.raises(ValueError, match="closed file"):  # the healthy child was closed too
        store.stores[1].log_scalar("loss", 0.0, step=0)


def test_multiplex_needs_at_least_one_store(tmp_path):
    with pytest.raises(ValueError, match="stores"):
        MultiplexLogStore(stores=[], run_dir=tmp_path)


def test_tensorboard_missing_says_how_to_install(tmp_path, monkeypatch):
    import sys

    from evsys.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'evsys\[tensorboard\]'"):
        LOG_STORES.build("tensorboard", {}, run_dir=tmp_path)
