"""What the tinker recipes share: checkpoints saved on the service, and the loss they report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from evsys.backends.tinker.connection import sdk_errors
from evsys.protocols import RunContext


class Checkpoints:
    """Training states saved on the service under ``step_N`` and ``final``, logged as artifacts.

    A save is submitted in order with the training steps (the service runs a run's requests in
    the order they were sent) and its path is read once that step's results are in, so saving
    does not stall the pipeline.
    """

    def __init__(self, ctx: RunContext, client: Any):
        self.ctx, self.client = ctx, client
        self._pending: list[tuple[int, str, Any]] = []

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        with sdk_errors(doing, self.ctx.backend.cfg):
            yield

    def submit_save(self, step: int) -> None:
        with self.errors(f"saving the state of step {step}"):
            self._pending.append((step, f"step_{step}", self.client.save_state(f"step_{step}")))

    def collect(self, up_to_step: int | None = None) -> None:
        """Log the paths of the saves submitted at or before ``up_to_step`` (None: all)."""
        while self._pending and (up_to_step is None or self._pending[0][0] <= up_to_step):
            step, name, future = self._pending.pop(0)
            with self.errors(f"saving the state of step {step}"):
                path = self.ctx.backend.wait(future, f"the checkpoint {name}").path
            self.ctx.log_store.log_artifact(f"checkpoint_{name}", path)

    def save_final(self) -> dict[str, str]:
        """The final training state (``final_checkpoint``: what ``model.load_checkpoint_path``
        and the tinker inference client take) and sampler weights of the same weights."""
        with self.errors("saving the final state"):
            state = self.client.save_state("final")
            sampler = self.client.save_weights_for_sampler("final")
            self.collect()
            artifacts = {
                "final_checkpoint": self.ctx.backend.wait(state, "the final checkpoint").path,
                "final_sampler_checkpoint": self.ctx.backend.wait(
                    sampler, "the final sampler weights"
                ).path,
            }
        for name, path in artifacts.items():
            self.ctx.log_store.log_artifact(name, path)
        return artifacts


def nll_per_token(output: Any, data: list[Any]) -> float:
    """Mean negative log-likelihood of the weighted target tokens of a ``forward_backward``."""
    total, weight = 0.0, 0.0
    for result, d in zip(output.loss_fn_outputs, data, strict=True):
        weights = d.loss_fn_inputs["weights"].to_numpy()
        total -= float((result["logprobs"].to_numpy() * weights).sum())
        weight += float(weights.sum())
    return total / max(weight, 1e-9)


def validate_live(ctx: RunContext, client: Any, step: int) -> None:
    """Score the ``val`` benchmarks due at ``step`` on the weights ``client`` trains now."""
    from evsys.backends.tinker.inference import TinkerInferenceClient

    def live() -> TinkerInferenceClient:
        sampler = ctx.backend.wait(
            client.save_weights_and_get_sampling_client(), "the weights to validate"
        )
        return TinkerInferenceClient.live(sampler, ctx.handles["tokenizer"])

    ctx.validate(step, live)


def validation_due(ctx: RunContext, step: int) -> bool:
    return ctx.validation is not None and bool(ctx.validation.due(step))
