"""Self-distillation fine-tuning (rejection sampling): learn from your own verified samples."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from evsys.algorithms.sft import SFT
from evsys.checks import recipe_metrics
from evsys.config import VerifierSpec
from evsys.errors import TrainingError
from evsys.files import write_jsonl_atomically
from evsys.phases import chained_result, phase_steps, run_phase
from evsys.protocols import Row, RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.rows import prompt_messages, prompt_text
from evsys.task_verifiers import rollout_verifier


@register_algorithm("sdft")
class SDFT:
    """Self-distillation: SFT on the model's own samples that the verifier accepts, by rounds.

    Each round samples ``samples_per_prompt`` completions per training prompt from the current
    weights, keeps those the verifier accepts, and SFTs on them (the ``sft`` recipe of this
    backend, with this recipe's SFT fields). Runs on every backend that runs ``sft``.

    A round's accepted samples are kept in ``phases/<round>_sft/samples.jsonl``.
    """

    class Config(SFT.Config):
        rounds: int = Field(1, ge=1, description="Sample → filter → SFT rounds.")
        samples_per_prompt: int = Field(4, ge=1, description="Completions sampled per prompt.")
        sample_temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
        max_tokens: int = Field(64, ge=1, description="Generation budget per sample.")
        verifier: VerifierSpec = Field(
            default_factory=lambda: VerifierSpec(kind="exact_match"),
            description=(
                "Decides which samples are kept; a harbor task's samples are judged by the "
                "task's own verifier instead."
            ),
        )
        min_reward: float = Field(1.0, description="Keep samples rewarded at least this much.")
        max_accepted_per_prompt: int = Field(
            1, ge=1, description="Distinct accepted samples kept per prompt."
        )

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    @classmethod
    def result_metrics(cls, params: dict[str, Any], backend: str) -> list[str]:
        """The last round's SFT metrics, every round's as ``phase/<round>_sft/…``, the rounds."""
        rounds = cls.Config(**params).rounds
        sft = [*recipe_metrics("sft", {}, backend), "sdft/accept_rate", "sdft/accepted"]
        per_round = [f"phase/{r}_sft/{name}" for r in range(rounds) for name in sft]
        return ["train/steps", "sdft/rounds", *sft[:-2], *per_round]

    def train(self, ctx: RunContext) -> RunResult:
        from evsys.run.evaluation import build_inference_client, generate_all

        cfg = self.cfg
        sft_params = cfg.model_dump(include=set(SFT.Config.model_fields))
        verifier = rollout_verifier(cfg.verifier)  # a harbor task's own verifier wins
        checkpoint, steps = ctx.config.model.load_checkpoint_path, 0
        metrics: dict[str, float] = {}
        for round_index in range(cfg.rounds):
            # Sample from the current weights; the trainer's copy is not needed meanwhile.
            ctx.backend.teardown(ctx.handles)
            client = build_inference_client(ctx.config, checkpoint)
            repeated = [row for row in ctx.train_rows for _ in range(cfg.samples_per_prompt)]
            completions = generate_all(
                client,
                repeated,
                max_tokens=cfg.max_tokens,
                temperature=cfg.sample_temperature,
                label=f"sdft sample {round_index}",
            )
            del client
            accepted = self._accepted(verifier, repeated, completions)
            name = f"{round_index}_sft"
            rate = len(accepted) / len(repeated)
            round_metrics = {"sdft/accept_rate": rate, "sdft/accepted": float(len(accepted))}
            ctx.log_store.log_metrics(round_metrics, step=steps)
            metrics |= {f"phase/{name}/{k}": v for k, v in round_metrics.items()}
            if not accepted:
                if round_index == 0:
                    raise TrainingError(
                        f"sdft round {round_index}: the verifier '{cfg.verifier.kind}' accepted "
                        f"none of {len(repeated)} samples, so there is nothing to learn from; "
                        "raise algorithm.params.samples_per_prompt or sample_temperature, lower "
                        "min_reward, or start from a stronger model"
                    )
                break  # later rounds: keep what the earlier rounds learned
            phase_dir = ctx.run_dir / "phases" / name
            write_jsonl_atomically(phase_dir / "samples.jsonl", accepted)
            result = run_phase(
                ctx,
                recipe="sft",
                params=sft_params,
                rows=accepted,
                start_from=checkpoint,
                directory=name,
                step_offset=steps,
            )
            checkpoint, steps = result.artifacts["final_checkpoint"], steps + phase_steps(result)
            metrics |= {f"phase/{name}/{k}": v for k, v in result.metrics.items()}
            metrics |= result.metrics
        metrics |= {"train/steps": float(steps), "sdft/rounds": float(round_index + 1)}
        return chained_result(ctx, checkpoint, metrics)

    def _accepted(self, verifier: Any, rows: list[Row], completions: list[str]) -> list[Row]:
        """Chat rows of the accepted completions, at most ``max_accepted_per_prompt`` distinct
        ones per prompt."""
        kept: dict[str, list[str]] = {}
        out = []
        for row, completion in zip(rows, completions, strict=True):
            prompt = prompt_text(row)
            reward = verifier.verify(prompt=prompt, completion=completion, target=row).reward
            seen = kept.setdefault(prompt, [])
            if reward < self.cfg.min_reward or completion in seen:
                continue
            if len(seen) >= self.cfg.max_accepted_per_prompt:
                continue
            seen.append(completion)
            assistant = {"role": "assistant", "content": completion}
            out.append({"messages": [*prompt_messages(row), assistant], "id": row.get("id")})
        return out
