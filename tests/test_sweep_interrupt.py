"""Ctrl-C in the middle of a sweep ends its dashboard experiment ``interrupted``, never left
``running``: whichever sweeper proposes the arms (the real hydra-optuna-sweeper, or evsys's own),
``python -m evsys`` in a process of its own, sent SIGINT once its first arm is recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the dashboard extra: pip install 'evsys[dashboard]'")
from dashboard_server import DashboardService  # noqa: E402

MOCK = ["backend=mock", "log_store=jsonl_dashboard", "metadata.success_metric=eval/exact_match"]
SWEEPS = {
    "optuna": [
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.n_trials=500",
        "hydra.sweeper.direction=maximize",
        "algorithm.params.learning_rate=interval(1e-6,1e-4)",
    ],
    "evsys": [f"seed=range(1,{500})"],
}


@pytest.mark.slow
@pytest.mark.parametrize("dashboard", ["sqlite"], indirect=True)
@pytest.mark.parametrize("sweeper", sorted(SWEEPS))
def test_ctrl_c_mid_sweep_ends_the_experiment_interrupted(
    dashboard: DashboardService, tmp_path: Path, sweeper: str
) -> None:
    if sweeper == "optuna":
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'evsys[dev]'")
    from evsys.tracking.client import DashboardClient

    key = dashboard.new_project().key
    env = {**os.environ, "EVSYS_API_URL": dashboard.url, "EVSYS_API_KEY": key}
    command = [sys.executable, "-m", "evsys", "--multirun", *MOCK, *SWEEPS[sweeper]]
    process = subprocess.Popen(
        [*command, "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sweep = tmp_path / "sweep"
    try:
        deadline = time.monotonic() + 180
        while not list(sweep.glob("*/run_result.json")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no arm was recorded"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)  # Ctrl-C, mid-sweep: hundreds of arms to go
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err
    recorded = [json.loads(p.read_text()) for p in sweep.glob("*/run_result.json")]
    assert len(recorded) < 400  # it stopped
    assert {r["status"] for r in recorded} <= {"completed", "cancelled"}

    experiment_id = json.loads((sweep / "dashboard_experiment.json").read_text())["experiment_id"]
    with DashboardClient(dashboard.url, key, log_dir=tmp_path / "reader") as client:
        experiment = client.get_experiment(experiment_id)
    assert experiment["status"] == "interrupted"
