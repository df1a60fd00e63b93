"""The local deployer end to end: a tiny model trained a few steps with the local backend, its
adapter merged and served by ``transformers serve`` in the background, scored through the
``openai_compatible`` client exactly as the local client scores the adapter, then stopped.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require, run_in_process

require("trl", "pip install 'evsys[local]'")
require("peft", "pip install 'evsys[local]'")
require("fastapi", "pip install 'evsys[serve]'")
require("uvicorn", "pip install 'evsys[serve]'")

from evsys.cli import main  # noqa: E402
from evsys.clients.usage import USAGE_METRICS  # noqa: E402
from evsys.deploy.local import is_alive, terminate  # noqa: E402
from evsys.harness import ModelEvalConfig, evaluate_model  # noqa: E402
from evsys.paths import data_dir  # noqa: E402

pytestmark = pytest.mark.slow
TINY = "evsys/tiny-llama"
ROWS = {"dataset": str(data_dir() / "tool_selection" / "test.jsonl"), "limit": 6, "max_tokens": 8}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Six SFT steps of the tiny model, deployed with ``evsys deploy --to local``."""
    run_dir = tmp_path_factory.mktemp("deploy") / "run"
    overrides = [
        "backend=local",
        "model=tiny",
        "algorithm.params.max_steps=6",
        "algorithm.params.learning_rate=5e-3",
        "eval=none",
    ]
    outcome = run_in_process(overrides, run_dir)
    assert outcome.record["status"] == "completed", outcome.record["error"]
    code = _cli(["deploy", str(run_dir), "--to", "local", "num_threads=1", "--json"])
    assert code == 0
    (entry,) = json.loads((run_dir / "run_result.json").read_text())["deployments"]
    try:
        yield run_dir, entry
    finally:  # whatever a test did, leave no server behind
        terminate(entry["details"]["pid"], entry["details"]["process_start"])


def test_the_served_model_scores_as_the_local_client_does(
    served: tuple[Path, dict[str, Any]],
) -> None:
    run_dir, entry = served
    assert entry["target"] == "local" and entry["status"] == "running"
    assert entry["endpoint"].startswith("http://127.0.0.1:") and entry["endpoint"].endswith("/v1")
    assert entry["model_id"] == json.loads((run_dir / "run_result.json").read_text())["run_id"]
    assert (Path(entry["details"]["merged_model"]) / "config.json").is_file()

    served_model = evaluate_model(
        ModelEvalConfig(
            inference_kind="openai_compatible",
            model_name=entry["model_id"],
            client_params={"base_url": entry["endpoint"], "api_key_env": None},
            **ROWS,
        )
    )
    adapter = str(run_dir / "checkpoints" / "final")
    local = evaluate_model(
        ModelEvalConfig(inference_kind="local", model_name=TINY, checkpoint_path=adapter, **ROWS)
    )
    base = evaluate_model(ModelEvalConfig(inference_kind="local", model_name=TINY, **ROWS))

    # Greedy decoding: the same completion for every row, so the same scores.
    assert _completions(served_model) == _completions(local)
    # The endpoint's calls are metered besides (no cost: a served adapter has no price).
    served_metrics = served_model.summary.metrics
    assert served_metrics["latency_p50_s"] > 0 and "cost_usd" not in served_metrics
    scores = {k: v for k, v in served_metrics.items() if k not in USAGE_METRICS}
    assert scores == local.summary.metrics
    assert served_model.summary.retry_report.total_failures == 0
    # …and it is the trained model that is served, not the base model.
    assert _completions(served_model) != _completions(base)


def test_a_served_run_is_not_deployed_twice(
    served: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, entry = served
    assert _cli(["deploy", str(run_dir), "--to", "local"]) == 2
    assert f"already served at {entry['endpoint']}" in capsys.readouterr().err


def test_stop_ends_the_server_and_records_it(
    served: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, entry = served
    assert _cli(["deploy", "--stop", str(run_dir)]) == 0
    assert f"stopped local {entry['endpoint']} (terminated)" in capsys.readouterr().out
    assert not is_alive(entry["details"]["pid"])
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(entry["endpoint"].removesuffix("/v1") + "/health", timeout=5)
    (stopped,) = json.loads((run_dir / "run_result.json").read_text())["deployments"]
    assert stopped["status"] == "stopped" and stopped["stopped_at"]


def _completions(artifacts: Any) -> list[list[str]]:
    return [row["predictions"] for row in artifacts.records]


def _cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)
