# The reference's Python quickstart (SDK reference, "2. Quickstart", "From Python"), verbatim. The
# test runs it in a project whose config.yaml is the reference's minimal config on the mock backend.
# The code below is the reference's, kept as written: neither linted nor formatted.
# ruff: noqa
# fmt: off
from evsys_sdk import run_experiment, load_yaml

cfg = load_yaml("config.yaml")        # -> ExperimentConfig (matrix expanded)
results = run_experiment(cfg)          # -> list[RunResult]
for r in results:
    print(r.run_id, r.status, r.metrics)
