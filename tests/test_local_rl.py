"""RL on the local backend (TRL's GRPOTrainer + PEFT) with the tiny model, offline on CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import harbor_tasks_rewarding_digits, require  # noqa: E402

require("trl", "pip install 'evsys[local]'")
require("peft", "pip install 'evsys[local]'")

from evsys.backends.local.inference import LocalInferenceClient  # noqa: E402
from evsys.backends.local.rl import verifier_reward  # noqa: E402
from evsys.compose.compose import compose_and_validate  # noqa: E402
from evsys.registry import VERIFIERS  # noqa: E402
from evsys.run.runner import ArmOutcome, run_arm  # noqa: E402
from evsys.verifiers import register_verifier_fn  # noqa: E402

TINY = "evsys/tiny-llama"
STEPS = 3


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArmOutcome, Path]:
    """Three GRPO steps of the tiny model on arithmetic: 2 prompts × 2 completions of 8 tokens."""
    run_dir = tmp_path_factory.mktemp("local-rl") / "run"
    overrides = [
        "algorithm=rl",
        "data=arithmetic",
        "backend=local",
        "model=tiny",
        "eval=none",
        f"algorithm.params.max_steps={STEPS}",
        "algorithm.params.batch_size=2",
        "algorithm.params.group_size=2",
        "algorithm.params.max_tokens=8",
        "algorithm.params.kl_coef=0.05",
        "algorithm.params.save_every=2",
    ]
    _, config = compose_and_validate(overrides)
    return run_arm(config, run_dir, overrides=overrides), run_dir


def test_rl_trains_logs_rewards_and_checkpoints(rl_run: tuple[ArmOutcome, Path]) -> None:
    outcome, run_dir = rl_run
    record = outcome.record
    assert record["status"] == "completed", record["error"]

    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in lines if "train/reward_mean" in m]
    assert [m["step"] for m in steps] == list(range(1, STEPS + 1))
    for m in steps:
        assert 0.0 <= m["train/reward_mean"] <= 1.0
        assert 0.0 <= m["train/frac_zero_std_groups"] <= 1.0
        assert all(math.isfinite(m[k]) for k in ("train/reward_std", "train/loss", "train/kl"))
        assert m["train/lr"] > 0
    assert record["metrics"]["train/steps"] == STEPS
    assert record["metrics"]["train/final_reward_mean"] == steps[-1]["train/reward_mean"]
    # The decode loop's threads: one or the arm's, whichever the timed steps found faster.
    threads, arms = record["extras"]["decode_threads"], record["runtime"]["torch_threads"]
    assert set(threads["median_step_ms"]) == {"1", str(arms)}
    assert threads["chosen"] == min(
        (1, arms), key=lambda n: threads["median_step_ms"][str(n)] or 0.0
    )

    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["final", "step_2"]
    final = run_dir / "checkpoints" / "final"
    assert record["artifacts"]["final_checkpoint"] == str(final)
    assert (final / "adapter_model.safetensors").is_file()


def test_the_rl_adapter_reloads_for_inference(rl_run: tuple[ArmOutcome, Path]) -> None:
    final = str(rl_run[1] / "checkpoints" / "final")
    client = LocalInferenceClient(model=TINY, checkpoint=final, device="cpu")
    (text,) = client.generate_batch(prompts=["What is 2 + 3?"], max_tokens=6, temperature=0.0)
    assert isinstance(text, str)


def test_the_reward_is_the_registered_verifiers() -> None:
    rows = [{"prompt": "What is 40 + 2?", "answer": "42"}]
    reward = verifier_reward(VERIFIERS.build("exact_match", {}), rows, name="exact_match")
    completions = [
        [{"role": "assistant", "content": "<answer>42</answer>"}],  # conversational
        "so <answer>42</answer>",  # plain text
        [{"role": "assistant", "content": "<answer>41</answer>"}],
    ]
    scores = reward(completions=completions, row_index=[0, 0, 0], prompts=[None] * 3)
    assert scores == [1.0, 1.0, 0.0]
    assert reward.__name__ == "exact_match"


@pytest.mark.usefixtures("clean_registries")
def test_a_graded_verifier_moves_the_adapter(workdir: Path) -> None:
    """Rewards that differ within a group give non-zero advantages, so the update is not empty."""

    @register_verifier_fn("distinct_chars")
    def distinct_chars(completion: str, expected: object) -> float:
        return min(1.0, len(set(completion)) / 16)

    overrides = [
        "algorithm=rl",
        "data=arithmetic",
        "backend=local",
        "model=tiny",
        "eval=none",
        "algorithm.params.verifier.kind=distinct_chars",
        "algorithm.params.loss=ppo",
        "algorithm.params.learning_rate=1e-3",
        "algorithm.params.max_steps=2",
        "algorithm.params.batch_size=2",
        "algorithm.params.group_size=3",
        "algorithm.params.max_tokens=8",
    ]
    _, config = compose_and_validate(overrides)
    outcome = run_arm(config, workdir / "run", overrides=overrides)
    assert outcome.record["status"] == "completed", outcome.record["error"]
    lines = (workdir / "run" / "metrics.jsonl").read_text().splitlines()
    steps = [m for m in map(json.loads, lines) if "train/reward_mean" in m]
    assert len(steps) == 2
    assert any(m["train/reward_std"] > 0 and m["train/grad_norm"] > 0 for m in steps)
    assert all(0.0 <= m["train/reward_mean"] <= 1.0 for m in steps)


@pytest.mark.usefixtures("clean_registries")
def test_harbor_tasks_train_on_their_own_verifiers(workdir: Path) -> None:
    """Rows that are harbor tasks: the prompt is the instruction, the reward the task's verifier."""
    task_overrides, calls = harbor_tasks_rewarding_digits(workdir)
    overrides = [*task_overrides, "backend=local", "model=tiny"]
    _, config = compose_and_validate(overrides)
    outcome = run_arm(config, workdir / "run", overrides=overrides)
    assert outcome.record["status"] == "completed", outcome.record["error"]
    lines = (workdir / "run" / "metrics.jsonl").read_text().splitlines()
    steps = [m for m in map(json.loads, lines) if "train/reward_mean" in m]
    assert [m["step"] for m in steps] == [1, 2]
    assert all(0.0 <= m["train/reward_mean"] <= 0.5 for m in steps)
    # 2 steps × 2 tasks × 2 completions, each scored by the task's function with its params.
    assert len(calls) == 8 and {scale for _, scale in calls} == {0.5}
    assert {expected for expected, _ in calls} <= {"0", "2", "4", "6"}


def lora_on_tiny(dtype: str = "float32") -> object:
    """The tiny model with a LoRA adapter whose B is not zero, so the adapter changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from evsys.backends.local.models import quiet_libraries, resolve_model_path

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    with quiet_libraries():
        base = AutoModelForCausalLM.from_pretrained(
            resolve_model_path(TINY), dtype=getattr(torch, dtype)
        )
        model = get_peft_model(base, config)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    return model.eval()


def test_rollouts_sample_from_merged_lora_weights_that_compute_the_same_policy() -> None:
    """Merged weights give the adapter's logits (to float32 rounding), generation through them
    picks the same tokens, the adapter's path is skipped, and every weight is back bit for bit."""
    import torch

    from evsys.backends.local.lora_merge import merged_lora

    model = lora_on_tiny()
    ids = torch.randint(3, 1000, (4, 12), generator=torch.Generator().manual_seed(1))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lora_calls = []
    hooks = [
        m.register_forward_hook(lambda *_: lora_calls.append(1))
        for name, m in model.named_modules()
        if name.endswith("lora_A.default")
    ]
    options = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        adapter_logits = model(input_ids=ids).logits
        adapter_tokens = model.generate(input_ids=ids, **options)
        calls_unmerged = len(lora_calls)
        with merged_lora(model) as merged:
            merged_logits = model(input_ids=ids).logits
            merged_tokens = model.generate(input_ids=ids, **options)
        calls_merged = len(lora_calls) - calls_unmerged
        again = model(input_ids=ids).logits
    for hook in hooks:
        hook.remove()
    assert merged and calls_unmerged > 0 and calls_merged == 0
    torch.testing.assert_close(merged_logits, adapter_logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(merged_tokens, adapter_tokens)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert torch.equal(again, adapter_logits)  # the adapter is back on


def test_half_precision_adapters_are_not_merged() -> None:
    """In bfloat16 the small update would be rounded away in W + BA: sampling stays unmerged."""
    import torch

    from evsys.backends.local.lora_merge import merged_lora

    model = lora_on_tiny("bfloat16")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        with merged_lora(model) as merged:
            logits = model(input_ids=ids).logits
    assert not merged and torch.equal(logits, expected)


def test_the_lean_decode_loop_draws_what_generate_draws() -> None:
    """Groups of left-padded prompts of different lengths, each prefilled once: with the same
    random state, the same tokens as ``generate`` (cut after the first end token), and a row
    that ends early stops there."""
    import torch
    from transformers import GenerationConfig

    from evsys.backends.local.decode_threads import DecodeThreads
    from evsys.backends.local.sampling import sample_completions

    model = lora_on_tiny()
    lengths, group, new = (7, 12, 9), 3, 16
    rng = torch.Generator().manual_seed(3)
    prompts = [
        torch.randint(3, 1000, (n,), generator=rng).tolist() for n in lengths for _ in range(group)
    ]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    config = GenerationConfig(
        max_new_tokens=new,
        do_sample=True,
        temperature=0.7,
        top_k=0,
        top_p=1.0,
        pad_token_id=0,
        disable_compile=True,
    )
    torch.manual_seed(0)
    with torch.no_grad():  # the third token seed 0 draws for row 0 ends a row: some end early
        end = int(
            model.generate(input_ids=ids, attention_mask=mask, generation_config=config)[
                0, width + 2
            ]
        )
    config.eos_token_id = [end]
    shorter = 0
    for seed in range(3):
        torch.manual_seed(seed)
        with torch.no_grad():
            generated = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        expected = []
        for row in generated[:, width:].tolist():
            stop = row.index(end) if end in row else len(row) - 1
            expected.append(row[: stop + 1])
        torch.manual_seed(seed)
        # Seed 1 decodes while the thread count is still being chosen, step by step.
        threads = DecodeThreads(2, trials=3) if seed else None
        ours = sample_completions(
            model.get_base_model(),
            prompts,
            max_new_tokens=new,
            temperature=0.7,
            pad_token_id=0,
            eos_token_ids=[end],
            threads=threads,
        )
        assert ours == expected
        shorter += sum(len(c) < new for c in ours)
    assert shorter > 0
    assert threads is not None and threads.chosen in (1, 2)  # seed 2: after the choice


def test_the_decode_threads_are_the_faster_side_by_the_median() -> None:
    from evsys.backends.local.decode_threads import DecodeThreads

    threads = DecodeThreads(4, trials=3)
    sides = []
    timed = {1: iter([0.3, 0.1, 0.1]), 4: iter([0.2, 0.2, 0.05])}
    while threads.chosen is None:
        side = threads.next()
        sides.append(side)
        threads.record(side, next(timed[side]))
    assert sides == [1, 4, 1, 4, 1, 4]  # alternating, one thread first
    assert threads.chosen == 1  # median 0.1 s against 0.2 s: one slow step does not decide
    assert threads.next() == 1 and threads.summary()["median_step_ms"] == {"1": 100.0, "4": 200.0}
    assert DecodeThreads(1).chosen == 1  # one thread has nothing to choose from


def test_a_step_runs_one_training_forward_and_one_prefill(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At kl_coef=0 with one update per rollout, a step's forwards are one prefill of the
    distinct prompts, one per decoded token, and the loss forward (each prompt once, then every
    completion): no reference and no old-policy recomputation."""
    import torch
    from transformers import LlamaModel

    forwards: list[tuple[bool, int, int]] = []  # (grad enabled, batch rows, tokens per row)
    original = LlamaModel.forward  # the backbone: TRL's fused training forward skips the head

    def counted(self: object, *args: object, **kwargs: object) -> object:
        ids = kwargs.get("input_ids")
        if ids is not None:
            forwards.append((torch.is_grad_enabled(), ids.shape[0], ids.shape[1]))  # type: ignore[attr-defined]
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LlamaModel, "forward", counted)
    steps, prompts, group, tokens = 2, 2, 3, 4
    overrides = [
        "algorithm=rl",
        "data=arithmetic",
        "backend=local",
        "model=tiny",
        "eval=none",
        f"algorithm.params.max_steps={steps}",
        f"algorithm.params.batch_size={prompts}",
        f"algorithm.params.group_size={group}",
        f"algorithm.params.max_tokens={tokens}",
    ]
    _, config = compose_and_validate(overrides)
    outcome = run_arm(config, workdir / "run", overrides=overrides)
    assert outcome.record["status"] == "completed", outcome.record["error"]
    training = [f for f in forwards if f[0]]
    prefills = [f for f in forwards if not f[0] and f[2] > 1]
    decodes = [f for f in forwards if not f[0] and f[2] == 1]
    assert sorted(f[1] for f in training) == sorted([prompts, prompts * group] * steps)
    assert len(prefills) == steps and all(f[1] == prompts for f in prefills)  # once per prompt
    assert 0 < len(decodes) <= steps * (tokens - 1)


def test_the_loss_forward_with_shared_prompts_scores_what_a_full_forward_scores() -> None:
    """Two groups of left-padded prompts, completions with padding: each group's prompt run
    once gives the full forward's log-probs, entropies and LoRA gradients (float32 rounding)."""
    import torch

    from evsys.backends.local.shared_prompt import shared_prompt_logps

    model = lora_on_tiny().train()
    rng = torch.Generator().manual_seed(1)
    width, new, group, temperature = 10, 6, 3, 0.7
    prompts, prompt_mask = [], []
    for length in (7, 10):
        prompt = torch.randint(3, 1000, (length,), generator=rng).tolist()
        prompts += [[0] * (width - length) + prompt] * group
        prompt_mask += [[0] * (width - length) + [1] * length] * group
    completions = torch.randint(3, 1000, (2 * group, new), generator=rng)
    completion_mask = torch.ones(2 * group, new, dtype=torch.long)
    completion_mask[0, 4:] = 0
    completion_mask[4, 2:] = 0
    ids = torch.cat([torch.tensor(prompts), completions], dim=1)
    mask = torch.cat([torch.tensor(prompt_mask), completion_mask], dim=1)
    weights = torch.randn(2 * group, new, generator=rng)

    logits = model(input_ids=ids, attention_mask=mask).logits[:, width - 1 : -1] / temperature
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    padding = completion_mask == 0
    expected = log_probs.gather(-1, completions[..., None]).squeeze(-1).masked_fill(padding, 0)
    expected_entropy = -(log_probs.exp() * log_probs).sum(-1).masked_fill(padding, 0)
    (expected * weights).sum().backward()
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
    expected_grads = {n: p.grad.clone() for n, p in lora.items()}
    model.zero_grad()

    scored = shared_prompt_logps(
        model, ids, mask, new, temperature=temperature, compute_entropy=True
    )
    assert scored is not None
    logps, entropy = scored
    (logps * weights).sum().backward()
    torch.testing.assert_close(logps, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(entropy, expected_entropy, rtol=1e-4, atol=1e-4)
    for name, param in lora.items():
        torch.testing.assert_close(param.grad, expected_grads[name], rtol=1e-3, atol=1e-5)
    assert any(bool(p.grad.abs().sum() > 0) for p in lora.values())
    # Rows that share no prompt are left to TRL's own forward.
    assert (
        shared_prompt_logps(model, ids[::3], mask[::3], new, temperature=1.0, compute_entropy=False)
        is None
    )
