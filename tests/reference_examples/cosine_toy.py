# The reference's plugin (SDK reference, "10. The registry & writing extensions"), verbatim but for
# its `...` placeholders, filled in: the loss decays from `amplitude`, and the checkpoint names a
# file under the run's output_dir.
# The code below is the reference's, kept as written: neither linted nor formatted.
# ruff: noqa
# fmt: off
from typing import ClassVar
from pydantic import BaseModel
from evsys_sdk import register_algorithm, RunContext, RunResult

@register_algorithm("cosine_toy")
class CosineToy:
    name: ClassVar[str] = "cosine_toy"

    class Config(BaseModel):
        amplitude: float = 1.0
        steps: int = 100

    def __init__(self, **params):
        self.cfg = self.Config(**params)   # validates run.algorithm.params

    def train(self, ctx: RunContext) -> RunResult:
        for step in range(self.cfg.steps):
            ctx.log_store.log_scalar("loss", self.cfg.amplitude / (step + 1), step)
        return RunResult(run_id=ctx.run_id, status="completed",
                         metrics={"final_loss": self.cfg.amplitude / self.cfg.steps},
                         artifacts={"final_checkpoint": f"{ctx.output_dir}/final.txt"})
