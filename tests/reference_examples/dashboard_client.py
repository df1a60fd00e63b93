# The reference's dashboard client example (SDK reference, "13. Dashboard client"), verbatim but
# for its `...` placeholders, filled in: the loss of each step and the benchmark's id.
# The code below is the reference's, kept as written: neither linted nor formatted.
# ruff: noqa
# fmt: off
from evsys_sdk import DashboardClient, ExperimentRun

client = DashboardClient()  # reads env vars
with ExperimentRun(client, experiment_name="sft_run_v9",
                   recipe_kind="sft", run_config={"lr": 1e-5}) as run:
    for step in range(1, 1001):
        run.log_step(step, loss=1 / step)
    run.log_eval(metrics={"pass_at_1": 0.83}, benchmark_id="bench-1")
    run.set_best_score(0.83)
    run.set_conclusion("rank-8 LoRA wins")
