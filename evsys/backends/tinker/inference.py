"""Sampling from a Tinker service, for eval and benchmarks: a base model, or trained weights.

``checkpoint`` may be sampler weights (``tinker://…/sampler_weights/…``, sampled directly) or a
training state (``tinker://…/weights/…``, a run's ``final_checkpoint``): the sampler weights saved
under the same name in its run when there are some, else the state loaded into a training client
whose weights are then published to a sampler. Prompts are rendered with the model's own
chat template and every prompt of a batch is submitted before any answer is read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from evsys.answers import cut_at_stops
from evsys.backends.tinker.connection import ConnectionParams, connect, sdk_errors, wait
from evsys.backends.tinker.rendering import load_tokenizer, prompt_tokens
from evsys.config import Seed
from evsys.errors import ConfigError, Problem
from evsys.registry import register_inference
from evsys.training import progress_bar

Prompt = str | list[dict[str, Any]]


@register_inference("tinker")
class TinkerInferenceClient:
    """Generates with a sampling client of a Tinker service."""

    class Config(ConnectionParams):
        model: str | None = Field(
            None, description="Base model name on the service. Eval fills in the run's model."
        )
        checkpoint: str | None = Field(
            None,
            description="tinker:// path of sampler weights or of a training state (a run's "
            "final_checkpoint). None: the base model.",
        )
        tokenizer: str | None = Field(
            None,
            description="Tokenizer whose chat template renders the prompts: a local directory "
            "or a Hugging Face id already in the cache. None: model.",
        )
        renderer: str | None = Field(
            None,
            description="Chat renderer of the prompts (see model.renderer_name). None: the "
            "tokenizer's own chat template. Eval fills in the run's model.renderer_name.",
        )
        stop: list[str] = Field(
            default_factory=list,
            description="Stop strings for every call, added to a call's own `stop`; the stop "
            "string is cut off. Generation always stops at the tokenizer's end-of-turn token.",
        )
        seed: Seed = Field(0, description="Seeds sampling at temperature > 0 (0 … 2**32-1).")

    def __init__(self, **params: Any):
        self.cfg = cfg = self.Config(**params)
        if cfg.model is None:
            raise ConfigError("the tinker inference client needs `model` (a base model name)")
        kind = _checkpoint_kind(cfg.checkpoint)
        self.calls = 0
        self.service = connect(cfg)
        try:
            self.service.check_model(cfg.model)
            self.tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, renderer=cfg.renderer)
            client = self.service.client
            with sdk_errors(f"opening a sampler of {cfg.checkpoint or cfg.model}", cfg):
                if kind == "sampler_weights":
                    future = client.create_sampling_client(model_path=cfg.checkpoint)
                elif kind == "weights" and (sampler := self._saved_sampler(cfg.checkpoint)):
                    future = client.create_sampling_client(model_path=sampler)
                elif kind == "weights":
                    trainer = wait(
                        client.create_training_client_from_state(cfg.checkpoint), cfg, "the state"
                    )
                    future = trainer.save_weights_and_get_sampling_client()
                else:
                    future = client.create_sampling_client(base_model=cfg.model)
                self.sampler = wait(future, cfg, "the sampler")
        except BaseException:
            self.close()
            raise

    @classmethod
    def live(cls, sampler: Any, tokenizer: Any, **params: Any) -> TinkerInferenceClient:
        """A client of a sampling client the caller holds (in-loop validation of the weights
        being trained); it opens no session of its own."""
        client = cls.__new__(cls)
        client.cfg, client.calls = cls.Config(**params), 0
        client.sampler, client.tokenizer, client.service = sampler, tokenizer, None
        return client

    def _saved_sampler(self, state: str) -> str | None:
        """The sampler weights saved under the state's name in its run, if any (evsys saves a
        run's final weights both ways): sampling them needs no training client."""
        run, _, name = state.removeprefix("tinker://").split("/")
        sampler = f"tinker://{run}/sampler_weights/{name}"
        try:
            listed = wait(self.service.rest.list_checkpoints(run), self.cfg, "the checkpoints")
        except Exception:  # a service that cannot list them: load the state instead
            return None
        return sampler if any(c.tinker_path == sampler for c in listed.checkpoints) else None

    def generate(
        self,
        *,
        prompt: Prompt,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> str:
        return self.generate_batch(
            prompts=[prompt], max_tokens=max_tokens, temperature=temperature, stop=stop
        )[0]

    def generate_batch(
        self,
        *,
        prompts: Sequence[Prompt],
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """One completion per prompt, in order; greedy at temperature 0, else sampled."""
        from tinker import types

        stops = [*self.cfg.stop, *(stop or ())]
        self.calls += 1
        outputs = []
        with sdk_errors("sampling", self.cfg), progress_bar("generate", len(prompts)) as advance:
            futures = [
                self.sampler.sample(
                    types.ModelInput.from_ints(prompt_tokens(self.tokenizer, p)),
                    1,
                    types.SamplingParams(
                        max_tokens=max_tokens,
                        temperature=temperature,
                        stop=[self.tokenizer.eos_token_id],
                        seed=hash((self.cfg.seed, self.calls, i)) % 2**31,
                    ),
                )
                for i, p in enumerate(prompts)
            ]
            for future in futures:
                tokens = wait(future, self.cfg, "a completion").sequences[0].tokens
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                outputs.append(cut_at_stops(text, stops))
                advance()
        return outputs

    def close(self) -> None:
        """Finish the session on the service."""
        service = getattr(self, "service", None)
        if service is not None:
            self.service = None
            # The service may be gone; there is nothing left to release here then.
            with contextlib.suppress(Exception):
                service.client.close("success").result(timeout=self.cfg.connect_timeout_s)


def _checkpoint_kind(path: str | None) -> str | None:
    if path is None:
        return None
    parts = path.removeprefix("tinker://").split("/")
    if (
        path.startswith("tinker://")
        and len(parts) == 3
        and parts[1] in ("weights", "sampler_weights")
    ):
        return parts[1]
    raise ConfigError(
        Problem(
            path="eval.inference.params.checkpoint",
            message="the tinker inference client samples Tinker weights: "
            "tinker://<run>/sampler_weights/<name> or tinker://<run>/weights/<name>",
            value=path,
            expected="tinker://<run>/sampler_weights/<name> or tinker://<run>/weights/<name>",
        )
    )
