"""A recipe's own build_batch and loss: the documented example, executed as written, changes
training on the local backend (TRL) and on the tinker backend (its test server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (  # noqa: E402
    doc_block,  # noqa: E402
    metrics_lines,
    require,
    run_in_process,
)

require("torch", "pip install 'evsys[local]'")
require("trl", "pip install 'evsys[local]'")

from evsys.compose.compose import compose_and_validate  # noqa: E402
from evsys.errors import ConfigError  # noqa: E402

LOCAL = ["backend=local", "model=tiny", "eval.enabled=false"]
TRAIN = ["algorithm.params.max_steps=3", "algorithm.params.learning_rate=5e-3"]


def test_the_readme_example_is_under_40_lines() -> None:
    assert len(doc_block("### Your own batches and loss").splitlines()) < 40


@pytest.fixture
def focal(clean_registries: None) -> str:
    """The documented recipe, registered by running its code as a user's module would."""
    exec(compile(doc_block("### Your own batches and loss"), "<docs>", "exec"), {})
    return "focal_answer_sft"


def test_the_recipe_takes_the_sft_fields_and_its_own(focal: str) -> None:
    _, config = compose_and_validate(
        [*LOCAL, f"algorithm={focal}", "algorithm.params.gamma=1", "algorithm.params.lora_rank=4"]
    )
    assert config.algorithm.params["gamma"] == 1
    with pytest.raises(ConfigError, match="gama"):
        compose_and_validate([*LOCAL, f"algorithm={focal}", "+algorithm.params.gama=1"])


def test_the_recipe_is_refused_where_its_loss_cannot_run(focal: str) -> None:
    with pytest.raises(ConfigError) as raised:
        compose_and_validate([f"algorithm={focal}", "backend=mock"])
    (problem,) = raised.value.problems
    assert "has no implementation on backend 'mock'" in problem.message
    assert problem.expected == "a backend among: local, tinker"


def test_build_batch_weighs_the_answer_tokens(focal: str) -> None:
    from transformers import AutoTokenizer

    from evsys.backends.local.models import resolve_model_path
    from evsys.registry import ALGORITHMS

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("evsys/tiny-llama"))
    row = {
        "messages": [
            {"role": "user", "content": "Email Fatima"},
            {"role": "assistant", "content": "<answer>GMAIL_SEND_EMAIL</answer>"},
        ]
    }
    (example,) = ALGORITHMS.get(focal)(answer_weight=4.0).build_batch([row], tokenizer)
    heavy = [t for t, w in zip(example.target_tokens, example.weights, strict=True) if w == 4.0]
    assert "GMAIL_SEND_EMAIL" in tokenizer.decode(heavy)
    assert set(example.weights) == {0.0, 1.0, 4.0}


def adapter(run_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(run_dir / "checkpoints/final/adapter_model.safetensors")


def losses(run_dir: Path) -> list[float]:
    return [m["train/loss"] for m in metrics_lines(run_dir) if "train/loss" in m]


def test_the_readme_recipe_changes_local_training(workdir: Path, focal: str) -> None:
    plain = run_in_process([*LOCAL, *TRAIN], workdir / "sft").record
    custom = run_in_process([*LOCAL, *TRAIN, f"algorithm={focal}"], workdir / "focal").record
    assert plain["status"] == custom["status"] == "completed", custom["error"]
    assert custom["metrics"]["train/steps"] == 3

    # Its loss is the one TRL minimised: a different curve from the same start, falling.
    plain_curve, custom_curve = losses(workdir / "sft"), losses(workdir / "focal")
    assert len(custom_curve) == 3 and custom_curve[-1] < custom_curve[0]
    assert all(abs(a - b) > 1e-3 for a, b in zip(plain_curve, custom_curve, strict=True))
    a, b = adapter(workdir / "sft"), adapter(workdir / "focal")
    assert a.keys() == b.keys()
    assert any(not a[k].allclose(b[k]) for k in a if "lora_B" in k)


# -- tinker ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require("tinker", "pip install 'evsys[tinker]'", declared_by="EVSYS_REQUIRE_TINKER")
    from tinker_server import serving_tiny

    with serving_tiny(tmp_path_factory.mktemp("tinker-server")) as running:
        yield running


@pytest.mark.tinker
def test_the_readme_recipe_changes_tinker_training(server: Any, workdir: Path, focal: str) -> None:
    tinker = ["backend=tinker", f"backend.params.base_url={server.url}", "model=tiny"]
    base = [*tinker, *TRAIN, "eval.enabled=false"]
    plain = run_in_process(base, workdir / "sft").record
    custom = run_in_process([*base, f"algorithm={focal}"], workdir / "focal").record
    same = run_in_process(  # the README loss with nothing changed is plain SFT's loss
        [
            *base,
            f"algorithm={focal}",
            "algorithm.params.answer_weight=1",
            "algorithm.params.gamma=0",
        ],
        workdir / "same",
    ).record
    for record in (plain, custom, same):
        assert record["status"] == "completed", record["error"]

    # Computed here from the service's logprobs; the service back-propagated its gradient.
    plain_curve, custom_curve = losses(workdir / "sft"), losses(workdir / "focal")
    assert custom_curve[-1] < custom_curve[0]
    assert all(abs(a - b) > 1e-3 for a, b in zip(plain_curve, custom_curve, strict=True))
    # The README loss with nothing changed trains as cross_entropy does: the same first steps;
    # then close, as its gradient is a mean over tokens and the service's sum is not.
    same_curve = losses(workdir / "same")
    assert same_curve[:2] == pytest.approx(plain_curve[:2], rel=1e-4)
    assert same_curve == pytest.approx(plain_curve, rel=1e-2)
    # Different weights: the final states sample differently.
    finals = {r["artifacts"]["final_checkpoint"] for r in (plain, custom)}
    assert len(finals) == 2
    assert json.dumps(custom["config"]["algorithm"]["kind"]) == f'"{focal}"'
