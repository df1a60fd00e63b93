"""The compute behind the test server: a tiny torch causal LM per training run, trained for real.

Every answer is computed: ``forward_backward`` runs the model and back-propagates the requested
loss (Tinker's definitions: sums over tokens, gradients accumulate until ``optim_step``),
``optim_step`` is AdamW, checkpoints are ``torch.save`` files under the server's root directory,
and sampling decodes token by token from the weights a sampler was created from.

Full-parameter training stands in for LoRA (the requested rank is recorded and reported back):
the tiny model is small enough that the difference is not what the tests are about.
"""

from __future__ import annotations

import copy
import inspect
import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

LOSSES = ("cross_entropy", "importance_sampling", "ppo")


class UserError(Exception):
    """A request the caller got wrong: reported as a failed future with category ``user``."""


@dataclass
class TrainingRun:
    model_id: str
    base_model: str
    lora_rank: int
    model: Any
    optimizer: torch.optim.Optimizer


@dataclass
class Sampler:
    sampler_id: str
    base_model: str
    model_path: str | None
    model: Any


@dataclass
class SampledSequence:
    tokens: list[int]
    logprobs: list[float]
    stop_reason: str  # "stop" or "length"


@dataclass
class Engine:
    """Training runs, samplers and checkpoints of one server; one request at a time."""

    root: Path
    base_models: dict[str, Path]
    """Base model name → directory ``from_pretrained`` loads it from."""
    runs: dict[str, TrainingRun] = field(default_factory=dict)
    samplers: dict[str, Sampler] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _base_cache: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    # -- models ----------------------------------------------------------------------------------

    def _base(self, name: str) -> tuple[Any, Any]:
        if name not in self.base_models:
            raise UserError(
                f"base model {name!r} is not supported; supported: {sorted(self.base_models)}"
            )
        if name not in self._base_cache:
            path = self.base_models[name]
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            self._base_cache[name] = (model, AutoTokenizer.from_pretrained(path))
        return self._base_cache[name]

    def tokenizer(self, base_model: str) -> Any:
        return self._base(base_model)[1]

    def create_model(self, model_id: str, base_model: str, lora_rank: int) -> dict[str, Any]:
        model = copy.deepcopy(self._base(base_model)[0])
        self.runs[model_id] = TrainingRun(model_id, base_model, lora_rank, model, _adamw(model))
        return {"model_id": model_id, "type": "create_model"}

    def info(self, model_id: str) -> dict[str, Any]:
        run = self._run(model_id)
        return {
            "type": "get_info",
            "model_data": {
                "arch": "llama",
                "model_name": run.base_model,
                "tokenizer_id": run.base_model,
            },
            "model_id": model_id,
            "is_lora": True,
            "lora_rank": run.lora_rank,
            "model_name": run.base_model,
        }

    def training_run(self, model_id: str) -> dict[str, Any]:
        """``GET /training_runs/{id}``: what the SDK's ``TrainingRun`` holds."""
        run = self._run(model_id)
        return {
            "training_run_id": model_id,
            "base_model": run.base_model,
            "model_owner": "evsys-test",
            "is_lora": True,
            "lora_rank": run.lora_rank,
            "last_request_time": datetime.now(UTC).isoformat(),
        }

    def _run(self, model_id: str) -> TrainingRun:
        if model_id not in self.runs:
            raise UserError(f"unknown model_id {model_id!r}")
        return self.runs[model_id]

    # -- training --------------------------------------------------------------------------------

    def forward_backward(
        self,
        model_id: str,
        data: list[dict[str, Any]],
        loss_fn: str,
        config: dict[str, float],
        forward_only: bool,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, float]]:
        """Per-datum outputs (``logprobs`` and ``elementwise_loss`` of every target token) and
        metrics (``loss:sum``); the gradient of the summed loss accumulates on the model."""
        if loss_fn not in LOSSES:
            raise UserError(f"loss_fn {loss_fn!r} is not supported by this server: {LOSSES}")
        run = self._run(model_id)
        lengths = [len(d["tokens"]) for d in data]
        width = max(lengths)
        ids = torch.zeros(len(data), width, dtype=torch.long)
        mask = torch.zeros(len(data), width, dtype=torch.long)
        for i, d in enumerate(data):
            ids[i, : lengths[i]] = torch.tensor(d["tokens"])
            mask[i, : lengths[i]] = 1
        with torch.set_grad_enabled(not forward_only):
            logits = run.model(input_ids=ids, attention_mask=mask).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            outputs, total = [], torch.zeros(())
            for i, d in enumerate(data):
                n = lengths[i]
                inputs = d["inputs"]
                targets = inputs["target_tokens"].long()
                if targets.shape[0] != n:
                    raise UserError(
                        f"datum {i}: target_tokens has {targets.shape[0]} entries for {n} inputs"
                    )
                target_logp = logp[i, :n].gather(1, targets[:, None])[:, 0]
                elementwise = _loss(loss_fn, target_logp, inputs, config, n)
                total = total + elementwise.sum()
                outputs.append(
                    {"logprobs": target_logp.detach(), "elementwise_loss": elementwise.detach()}
                )
            if not forward_only:
                total.backward()
        return outputs, {"loss:sum": float(total.detach())}

    def optim_step(self, model_id: str, adam: dict[str, float]) -> dict[str, Any]:
        run = self._run(model_id)
        for group in run.optimizer.param_groups:
            group["lr"] = adam.get("learning_rate", 1e-4)
            group["betas"] = (adam.get("beta1", 0.9), adam.get("beta2", 0.95))
            group["eps"] = adam.get("eps", 1e-12)
            group["weight_decay"] = adam.get("weight_decay", 0.0)
        params = [p for p in run.model.parameters() if p.grad is not None]
        norm = float(torch.nn.utils.clip_grad_norm_(params, math.inf)) if params else 0.0
        if adam.get("grad_clip_norm", 0.0) > 0:
            torch.nn.utils.clip_grad_norm_(params, adam["grad_clip_norm"])
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        return {"metrics": {"grad_norm:mean": norm}}

    # -- checkpoints -----------------------------------------------------------------------------

    def save(self, model_id: str, name: str, kind: str) -> str:
        """Write the run's weights (``kind="weights"``: with optimizer state) and return the
        ``tinker://`` path."""
        run = self._run(model_id)
        path = f"tinker://{model_id}/{kind}/{name}"
        payload = {
            "base_model": run.base_model,
            "lora_rank": run.lora_rank,
            "model": run.model.state_dict(),
        }
        if kind == "weights":
            payload["optimizer"] = run.optimizer.state_dict()
        file = self._file(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, file)
        return path

    def load(self, model_id: str, path: str, optimizer: bool, base_model: str | None) -> None:
        """A training run ``model_id`` (new, or replacing one) from a ``weights`` checkpoint."""
        payload = self._checkpoint(path, kind="weights")
        if base_model is not None and base_model != payload["base_model"]:
            raise UserError(
                f"checkpoint {path} is of {payload['base_model']!r}, not {base_model!r}"
            )
        model = copy.deepcopy(self._base(payload["base_model"])[0])
        model.load_state_dict(payload["model"])
        opt = _adamw(model)
        if optimizer:
            opt.load_state_dict(payload["optimizer"])
        self.runs[model_id] = TrainingRun(
            model_id, payload["base_model"], payload["lora_rank"], model, opt
        )

    def checkpoints(self, model_id: str) -> list[dict[str, Any]]:
        """The run's saved checkpoints, as ``GET /training_runs/{id}/checkpoints`` lists them."""
        found = []
        for kind, label in (("weights", "training"), ("sampler_weights", "sampler")):
            for file in sorted((self.root / model_id.replace(":", "_") / kind).glob("*.pt")):
                found.append(
                    {
                        "checkpoint_id": f"{kind}/{file.stem}",
                        "checkpoint_type": label,
                        "time": datetime.fromtimestamp(file.stat().st_mtime, UTC).isoformat(),
                        "tinker_path": f"tinker://{model_id}/{kind}/{file.stem}",
                        "size_bytes": file.stat().st_size,
                    }
                )
        return found

    def _file(self, path: str) -> Path:
        run_id, kind, name = _parse(path)
        return self.root / run_id.replace(":", "_") / kind / f"{name}.pt"

    def _checkpoint(self, path: str, kind: str) -> dict[str, Any]:
        if _parse(path)[1] != kind:
            raise UserError(f"{path} is not a '{kind}' checkpoint")
        file = self._file(path)
        if not file.is_file():
            raise UserError(f"checkpoint {path} does not exist")
        return torch.load(file, weights_only=False)

    # -- sampling --------------------------------------------------------------------------------

    def sampler_from_run(self, sampler_id: str, model_id: str) -> None:
        """A sampler holding a snapshot of the run's current weights."""
        run = self._run(model_id)
        self.samplers[sampler_id] = Sampler(
            sampler_id, run.base_model, None, copy.deepcopy(run.model)
        )

    def sampler_from_path(
        self, sampler_id: str, model_path: str | None, base_model: str | None
    ) -> None:
        if model_path is not None:
            payload = self._checkpoint(model_path, kind="sampler_weights")
            model = copy.deepcopy(self._base(payload["base_model"])[0])
            model.load_state_dict(payload["model"])
            base_model = payload["base_model"]
        elif base_model is not None:
            model = self._base(base_model)[0]  # never trained: shared
        else:
            raise UserError("a sampling session needs model_path or base_model")
        self.samplers[sampler_id] = Sampler(sampler_id, base_model, model_path, model)

    def sampler(self, sampler_id: str) -> Sampler:
        if sampler_id not in self.samplers:
            raise UserError(f"unknown sampling session {sampler_id!r}")
        return self.samplers[sampler_id]

    @torch.no_grad()
    def sample(
        self,
        sampler_id: str,
        prompt: list[int],
        num_samples: int,
        params: dict[str, Any],
        prompt_logprobs: bool,
        seed: int,
    ) -> tuple[list[SampledSequence], list[float] | None]:
        sampler = self.sampler(sampler_id)
        model, tokenizer = sampler.model, self.tokenizer(sampler.base_model)
        stop_ids, stop_texts = _stops(params.get("stop"), tokenizer)
        temperature = float(params.get("temperature", 1.0))
        top_k, top_p = int(params.get("top_k", -1)), float(params.get("top_p", 1.0))
        max_tokens = params.get("max_tokens") or 16
        generator = torch.Generator().manual_seed(params.get("seed") or seed)

        ids = torch.tensor([prompt] * num_samples)
        # The KV cache is filled in place, so the same object feeds every later step.
        cache = {_cache_keyword(model): DynamicCache(config=model.config)}
        out = model(input_ids=ids, use_cache=True, **cache)
        scored = None
        if prompt_logprobs:
            logp = torch.log_softmax(out.logits[0, :-1].float(), dim=-1)
            scored = [math.nan] + logp.gather(1, ids[0, 1:, None])[:, 0].tolist()
        logits = out.logits[:, -1].float()
        sequences = [SampledSequence([], [], "length") for _ in range(num_samples)]
        done = [False] * num_samples
        for _ in range(max_tokens):
            logp = torch.log_softmax(logits / temperature if temperature > 0 else logits, -1)
            if temperature > 0:
                probs = _filter(logp.exp(), top_k, top_p)
                chosen = torch.multinomial(probs, 1, generator=generator)[:, 0]
            else:
                chosen = logp.argmax(-1)
            for i, token in enumerate(chosen.tolist()):
                if done[i]:
                    continue
                seq = sequences[i]
                seq.tokens.append(token)
                seq.logprobs.append(float(logp[i, token]))
                text = tokenizer.decode(seq.tokens) if stop_texts else ""
                if token in stop_ids or any(s in text for s in stop_texts):
                    done[i], seq.stop_reason = True, "stop"
            if all(done):
                break
            out = model(input_ids=chosen[:, None], use_cache=True, **cache)
            logits = out.logits[:, -1].float()
        return sequences, scored


def _cache_keyword(model: Any) -> str:
    """The forward argument that takes the KV cache: transformers 5.24 renamed
    ``past_key_values`` to ``cache`` (the old name warns until its removal in 5.40)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _adamw(model: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-12)


def _loss(
    loss_fn: str,
    target_logp: torch.Tensor,
    inputs: dict[str, torch.Tensor],
    config: dict[str, float],
    n: int,
) -> torch.Tensor:
    """Per-token loss, as Tinker defines its built-in losses."""

    def need(name: str) -> torch.Tensor:
        if name not in inputs:
            raise UserError(f"loss_fn {loss_fn!r} needs loss_fn_inputs[{name!r}]")
        value = inputs[name].float()
        if value.shape[0] != n:
            raise UserError(f"loss_fn_inputs[{name!r}] has {value.shape[0]} entries for {n}")
        return value

    if loss_fn == "cross_entropy":
        return -target_logp * need("weights")
    ratio = torch.exp(target_logp - need("logprobs"))
    advantages = need("advantages")
    if loss_fn == "importance_sampling":
        return -ratio * advantages
    low, high = config.get("clip_low_threshold", 0.8), config.get("clip_high_threshold", 1.2)
    clipped = torch.clamp(ratio, low, high)
    return -torch.minimum(ratio * advantages, clipped * advantages)


def _filter(probs: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k > 0:
        kth = probs.topk(min(top_k, probs.shape[-1]), dim=-1).values[:, -1:]
        probs = torch.where(probs < kth, torch.zeros_like(probs), probs)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < top_p * sorted_probs.sum(-1, True)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs * keep)
    return probs


def _stops(stop: Any, tokenizer: Any) -> tuple[set[int], list[str]]:
    """Stop token ids and stop strings; None keeps the implicit end-of-sequence stop."""
    if stop is None:
        return {tokenizer.eos_token_id}, []
    stops = [stop] if isinstance(stop, str) else list(stop)
    return {s for s in stops if isinstance(s, int)}, [s for s in stops if isinstance(s, str)]


def _parse(path: str) -> tuple[str, str, str]:
    if not path.startswith("tinker://") or len(parts := path[9:].split("/")) != 3:
        raise UserError(f"invalid tinker path {path!r}: expected tinker://<run>/<kind>/<name>")
    if parts[1] not in ("weights", "sampler_weights"):
        raise UserError(f"invalid tinker path {path!r}: unknown kind {parts[1]!r}")
    return parts[0], parts[1], parts[2]
