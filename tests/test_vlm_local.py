"""Rows with images through the local backend: a tiny LLaVA (tests/tiny_vlm.py), built here and
loaded through from_pretrained(path), LoRA-SFT'd by TRL's SFTTrainer on rows whose image files
lie in the data file's images/ folder, then evaluated on those rows and on a benchmark whose
images/ folder holds its squares."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import flow, metrics_lines, require, run_in_process
from tiny_vlm import COLOURS, build_tiny_vlm, colour_folder, colour_row, data_url, png

require("trl", "pip install 'evsys[local]'")
require("peft", "pip install 'evsys[local]'")
require("PIL", "pip install 'evsys[local]'")

from evsys.backends.local.inference import LocalInferenceClient  # noqa: E402
from evsys.errors import ConfigError  # noqa: E402


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm") / "model")


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def vlm_run(tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    root = tmp_path_factory.mktemp("vlm-run")
    colour_folder(root / "data")
    rows = [colour_row(name, f"images/{name}.png") for name in COLOURS] * 4
    train = _jsonl(root / "data" / "train.jsonl", rows)
    colour_folder(root / "bench")
    tasks = [colour_row(name, f"images/{name}.png") for name in COLOURS]
    _jsonl(root / "bench" / "tasks.jsonl", tasks)
    benchmark = [
        {"path": str(root / "bench"), "name": "squares", "tags": ["test"]},
        {"path": str(root / "bench"), "name": "squares_val", "tags": ["val"], "run_every": 3},
    ]
    overrides = [
        "backend=local",
        f"model.name={tiny_vlm}",
        f"data.path={train}",
        f"data.eval_path={train}",
        "data.transforms=[]",
        "eval.metrics=[{kind: exact_match}]",
        "eval.max_tokens=4",
        "algorithm.params.max_steps=6",
        "algorithm.params.batch_size=4",
        "algorithm.params.learning_rate=1e-2",
        "algorithm.params.log_every=1",
        f"+metadata.benchmark={flow(benchmark)}",
    ]
    run_dir = root / "run"
    return run_in_process(overrides, run_dir), run_dir


def test_a_vlm_trains_on_rows_with_images_and_answers_them(vlm_run: tuple[Any, Path]) -> None:
    outcome, run_dir = vlm_run
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    assert record["metrics"]["train/steps"] == 6
    losses = [m["train/loss"] for m in metrics_lines(run_dir) if "train/loss" in m]
    assert len(losses) == 6 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]  # a learning rate of 1e-2 on 3 answers: it learns
    # Eval and the benchmark generated an answer for every row, from the images.
    assert "eval/exact_match" in record["metrics"]
    assert "test/squares/exact_match" in record["metrics"]
    # … and the val benchmark on the live model, at steps 3 and 6.
    val = [m["step"] for m in metrics_lines(run_dir) if "val/squares_val/exact_match" in m]
    assert val == [3, 6]
    predictions = (run_dir / "benchmarks" / "squares.jsonl").read_text().splitlines()
    assert len(predictions) == len(COLOURS)


def test_the_trained_adapter_reloads_and_sees_the_image(
    tiny_vlm: Path, vlm_run: tuple[Any, Path]
) -> None:
    _, run_dir = vlm_run
    client = LocalInferenceClient(
        model=str(tiny_vlm), checkpoint=str(run_dir / "checkpoints" / "final"), device="cpu"
    )
    prompts = [
        [colour_row(name, data_url(png(rgb)), answer=False)] for name, rgb in COLOURS.items()
    ]
    answers = client.generate_batch(prompts=prompts, max_tokens=3)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    # In bfloat16 too: the pixels are cast to the weights' dtype.
    half = LocalInferenceClient(model=str(tiny_vlm), device="cpu", dtype="bfloat16")
    assert len(half.generate_batch(prompts=prompts[:1], max_tokens=2)) == 1
    # The pixels reach the model: the same question over two images is two different inputs.
    logits = [_first_logits(client, prompt) for prompt in prompts[:2]]
    assert not logits[0].allclose(logits[1])


def _first_logits(client: LocalInferenceClient, prompt: list[dict[str, Any]]) -> Any:
    import torch

    text, images = client._render(prompt, "prompt")
    batch = client.tokenizer(text=[text], images=images, return_tensors="pt")
    with torch.inference_mode():
        return client.model(**batch).logits[0, -1]


def test_a_text_model_refuses_rows_with_images_naming_the_row() -> None:
    client = LocalInferenceClient(model="evsys/tiny-llama", device="cpu")
    prompts = [
        [{"role": "user", "content": "hello"}],
        [colour_row("red", data_url(png(COLOURS["red"])), answer=False)],
    ]
    with pytest.raises(ConfigError, match=r"prompt 1 holds images.*text-only model"):
        client.generate_batch(prompts=prompts, max_tokens=2)


def test_a_recipe_that_takes_text_only_refuses_image_rows_before_training(
    tiny_vlm: Path, tmp_path: Path
) -> None:
    colour_folder(tmp_path / "data")
    rows = [colour_row("red", "images/red.png", answer=True) for _ in range(2)]
    train = _jsonl(tmp_path / "data" / "train.jsonl", rows)
    overrides = [
        "backend=local",
        f"model.name={tiny_vlm}",
        "algorithm=rl",
        f"data.path={train}",
        "data.transforms=[]",
        "eval.enabled=false",
    ]
    record = run_in_process(overrides, tmp_path / "run").record
    assert record["status"] == "failed"
    assert "train row 0 holds images, and recipe 'rl' takes text only" in str(record["error"])
