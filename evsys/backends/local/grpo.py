"""TRL's GRPOTrainer with evsys's faster rollouts.

The loss, advantages, logging and every other part of the step are TRL's; only the sampling of
completions changes: it runs on the LoRA-merged weights (:mod:`evsys.backends.local.lora_merge`),
which sample the same distribution with a third of the projection matmuls. The rest is already
lean in TRL 1.16 for evsys's settings (one generation batch per optimizer step, one update per
rollout): the old policy's log-probabilities are not recomputed (the ratio is taken against the
detached current ones), no reference forward runs when ``kl_coef`` is 0, and generation uses the
KV cache.
"""

from __future__ import annotations

from typing import Any


def fast_grpo_trainer() -> type:
    """``GRPOTrainer`` whose transformers-generation rollouts sample from merged LoRA weights."""
    from trl import GRPOTrainer

    from evsys.backends.local.lora_merge import merged_lora

    class EvsysGRPOTrainer(GRPOTrainer):
        def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
            if self.use_vllm:  # vLLM gets its weights its own way
                return super()._generate_single_turn(*args, **kwargs)
            with merged_lora(self.accelerator.unwrap_model(self.model)):
                return super()._generate_single_turn(*args, **kwargs)

    return EvsysGRPOTrainer
