"""``import evsys`` and the light commands never import the heavy stacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "trl", "peft", "tinker", "datasets", "tensorboard")
# The hosted clients' SDKs (and E2B's), imported only when such a client is built.
HEAVY += ("openai", "anthropic", "google.genai", "e2b")
# The dashboard service's and the evolve sweeper's packages, imported only by what serves or
# evolves (the dashboard client is the standard library alone).
HEAVY += ("fastapi", "uvicorn", "sqlalchemy", "jinja2", "optuna", "gepa")

PROBE = """
import sys, runpy
sys.argv = {argv!r}
try:
    runpy.run_module({module!r}, run_name="__main__")
except SystemExit:
    pass
print("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def loaded_heavy_modules(module: str, argv: list[str], cwd: Path) -> list[str]:
    code = PROBE.format(argv=argv, module=module, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("HEAVY:"))
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def test_import_evsys_is_light() -> None:
    code = f"import sys, evsys; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "use",
    [
        "",
        "evsys_sdk.load_yaml, evsys_sdk.run_experiment, evsys_sdk.Experiment",
        "evsys_sdk.list_algorithms(), evsys_sdk.schema_for('algorithm', 'sft')",
        "evsys_sdk.list_inference(), evsys_sdk.DashboardClient, evsys_sdk.configure_logger",
    ],
    ids=["import", "yaml and runner", "registries", "inference, dashboard, logging"],
)
def test_import_evsys_sdk_is_light(use: str) -> None:
    """The reference's package name: the same discipline as evsys's."""
    code = f"import sys, evsys_sdk\n{use}\nprint([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# A file in the reference's single-YAML format: reading and planning it is light too.
REFERENCE_FILE = Path(__file__).parent / "reference_examples" / "matrix.yaml"


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("evsys", ["evsys", "--cfg", "job"]),
        ("evsys", ["evsys", "--help"]),
        ("evsys.cli", ["evsys", "validate"]),
        ("evsys.cli", ["evsys", "validate", "--all-experiments"]),
        ("evsys.cli", ["evsys", "list"]),
        ("evsys.cli", ["evsys", "schema", "algorithm", "sft"]),
        ("evsys.cli", ["evsys", "schema", "--all"]),
        ("evsys.cli", ["evsys", "plan", "seed=1,2"]),
        ("evsys.cli", ["evsys", "results", "."]),
        ("evsys.cli", ["evsys", "diff", ".", "."]),
        ("evsys.cli", ["evsys", "init-project", "light"]),
        ("evsys.cli", ["evsys", "new-experiment", "light"]),
        ("evsys.cli", ["evsys", "deploy", "--help"]),
        ("evsys.cli", ["evsys", "deploy", ".", "--to", "local"]),
        ("evsys.cli", ["evsys", "deploy", "--stop", "."]),
        ("evsys.cli", ["evsys", "sync", "no-such-dir"]),
        ("evsys.cli", ["evsys", "validate", str(REFERENCE_FILE), "--deep"]),
        ("evsys.cli", ["evsys", "plan", str(REFERENCE_FILE)]),
        ("evsys.cli", ["evsys", "migrate", str(REFERENCE_FILE)]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_light_commands_stay_light(module: str, argv: list[str], tmp_path: Path) -> None:
    assert loaded_heavy_modules(module, argv, tmp_path) == []
