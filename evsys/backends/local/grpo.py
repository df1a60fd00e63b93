"""TRL's GRPOTrainer with evsys's faster rollouts.

The loss, advantages, rewards, logging and every other part of the step are TRL's; only the
sampling of completions changes:

- it runs on the LoRA-merged weights (:mod:`evsys.backends.local.lora_merge`), which sample
  the same distribution with a third of the projection matmuls and none of PEFT's wrappers;
- for a plain text model with TRL's default sampling knobs (temperature only: no top-k, top-p,
  min-p or repetition penalty, no extra ``generation_kwargs``), it runs evsys's decode loop
  (:mod:`evsys.backends.local.sampling`): each group's prompt prefilled once, no ``generate``
  machinery per token, the same draws, each step on the faster of one thread and the arm's
  (:mod:`evsys.backends.local.decode_threads`). Anything else goes through TRL's own
  ``generate`` call.

The loss forward (and the reference forward at ``kl_coef > 0``) runs each group's prompt once,
shared by its completions through the KV cache (:mod:`evsys.backends.local.shared_prompt`).

The rest is already lean in TRL 1.16 for evsys's settings (one generation batch per optimizer
step, one update per rollout): the old policy's log-probabilities are not recomputed (the ratio
is taken against the detached current ones) and no reference forward runs when ``kl_coef`` is 0.
"""

from __future__ import annotations

from typing import Any

from evsys.backends.local.decode_threads import DecodeThreads


def fast_grpo_trainer(threads: DecodeThreads | None = None) -> type:
    """``GRPOTrainer`` whose transformers-generation rollouts take the faster path above;
    ``threads`` chooses the torch threads of the decode loop's steps."""
    from trl import GRPOTrainer

    from evsys.backends.local.lora_merge import merged_lora
    from evsys.backends.local.sampling import sample_completions
    from evsys.backends.local.shared_prompt import shared_prompt_logps

    class EvsysGRPOTrainer(GRPOTrainer):
        def _generate_single_turn(
            self, prompt_ids: Any, images: Any, multimodal_fields: Any, *args: Any, **kwargs: Any
        ) -> Any:
            if self.use_vllm or self.use_transformers_continuous_batching:
                return super()._generate_single_turn(
                    prompt_ids, images, multimodal_fields, *args, **kwargs
                )
            model = self.accelerator.unwrap_model(self.model)
            with merged_lora(model):
                if not self._lean_sampling(images, multimodal_fields):
                    return super()._generate_single_turn(
                        prompt_ids, images, multimodal_fields, *args, **kwargs
                    )
                base = model.get_base_model() if hasattr(model, "get_base_model") else model
                training = base.training
                base.eval()  # as TRL's generate runs: no dropout while sampling
                try:
                    completions = sample_completions(
                        base,
                        [list(ids) for ids in prompt_ids],
                        max_new_tokens=self.max_completion_length,
                        temperature=self.temperature,
                        pad_token_id=self._tokenizer.pad_token_id,
                        eos_token_ids=list(self.eos_token_ids),
                        threads=threads,
                    )
                finally:
                    base.train(training)
            return completions, None  # no sampling logprobs, as TRL's generate path

        def _get_per_token_logps_and_entropies(
            self,
            model: Any,
            input_ids: Any,
            attention_mask: Any,
            logits_to_keep: int,
            batch_size: int | None = None,
            compute_entropy: bool = False,
            compute_aux_loss: bool = False,
            **multimodal: Any,
        ) -> Any:
            plain = (
                not compute_aux_loss
                and all(value is None for value in multimodal.values())
                and self.accelerator.num_processes == 1  # a DDP forward syncs the gradients
                and (batch_size is None or batch_size >= input_ids.size(0))
            )
            if plain:
                with self.accelerator.autocast():
                    scored = shared_prompt_logps(
                        self.accelerator.unwrap_model(model),
                        input_ids,
                        attention_mask,
                        logits_to_keep,
                        temperature=self.temperature,
                        compute_entropy=compute_entropy,
                    )
                if scored is not None:
                    return (*scored, None)
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **multimodal,
            )

        def _lean_sampling(self, images: Any, multimodal_fields: Any) -> bool:
            """Whether the rollout is one the lean loop samples exactly as ``generate`` would."""
            return (
                not images
                and not multimodal_fields
                and not self._is_vlm
                and not (self.is_deepspeed_enabled or self.is_fsdp_enabled)  # sharded weights
                and self.args.generation_kwargs is None
                and self.pad_to_multiple_of is None
                and self.top_k in (None, 0)
                and self.top_p == 1.0
                and self.min_p is None
                and self.repetition_penalty == 1.0
                and self.args.cache_implementation is None
            )

    return EvsysGRPOTrainer
