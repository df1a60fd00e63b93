"""The tinker backend when things go wrong, and what it never writes down.

An unreachable service, a rejected key, a model the service does not serve: one clear error
within seconds, the run recorded failed, the other arms of a sweep carried on. The API key never
appears in a config dump, a log, a record or an error.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require, run_evsys, run_results  # noqa: E402

require("tinker", "pip install 'evsys[tinker]'", declared_by="EVSYS_REQUIRE_TINKER")
require("transformers", "pip install 'evsys[local]'", declared_by="EVSYS_REQUIRE_TINKER")

from tinker_server import API_KEY, TinkerTestServer, sdk_clients_closed, tiny_server  # noqa: E402

from evsys.compose.compose import compose_and_validate  # noqa: E402
from evsys.run.runner import ArmOutcome, run_arm  # noqa: E402

pytestmark = pytest.mark.tinker

FAST = 10.0  # seconds: "within seconds", with room for a loaded CI machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinkerTestServer]:
    with tiny_server(tmp_path_factory.mktemp("tinker-server")) as running, sdk_clients_closed():
        yield running


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TINKER_API_KEY", API_KEY)
    monkeypatch.delenv("TINKER_BASE_URL", raising=False)
    return API_KEY


def run(url: str, run_dir: Path, *overrides: str) -> tuple[ArmOutcome, float]:
    everything = ["backend=tinker", f"backend.params.base_url={url}", "model=tiny", *overrides]
    _, config = compose_and_validate(everything)
    started = time.perf_counter()
    outcome = run_arm(config, run_dir, overrides=everything)
    return outcome, time.perf_counter() - started


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once the socket is closed


def test_an_unreachable_service_fails_fast(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    outcome, seconds = run(url, tmp_path / "run")
    record = outcome.record
    assert record["status"] == "failed" and seconds < FAST
    assert "unreachable" in record["error"] and url in record["error"]
    assert record["error_type"] == "BackendError"


def test_a_service_that_never_answers_fails_after_the_probe_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        outcome, seconds = run(url, tmp_path / "run", "backend.params.connect_timeout_s=0.5")
    assert outcome.record["status"] == "failed" and seconds < FAST
    assert "unreachable" in outcome.record["error"]


def test_a_rejected_key_fails_fast(
    server: TinkerTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINKER_API_KEY", "tml-not-the-key")
    outcome, seconds = run(server.url, tmp_path / "run")
    error = outcome.record["error"]
    assert outcome.record["status"] == "failed" and seconds < FAST
    assert "rejected the API key in $TINKER_API_KEY" in error
    assert "tml-not-the-key" not in json.dumps(outcome.record)


def test_a_key_without_the_tinker_prefix_is_refused(
    server: TinkerTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINKER_API_KEY", "sk-some-other-service")
    outcome, seconds = run(server.url, tmp_path / "run")
    assert outcome.record["status"] == "failed" and seconds < FAST
    assert "tml-" in outcome.record["error"] and "TINKER_API_KEY" in outcome.record["error"]
    assert "sk-some-other-service" not in json.dumps(outcome.record)


def test_a_missing_key_names_the_variable(
    server: TinkerTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_TINKER_KEY", API_KEY)
    outcome, _ = run(
        server.url,
        tmp_path / "run",
        "backend.params.api_key_env=MY_TINKER_KEY",
        "algorithm.params.max_steps=1",
        "eval=none",
    )
    assert outcome.record["status"] == "completed", outcome.record["error"]

    monkeypatch.delenv("TINKER_API_KEY")
    outcome, _ = run(server.url, tmp_path / "again")
    assert outcome.record["status"] == "failed"
    assert "set the environment variable TINKER_API_KEY" in outcome.record["error"]


def test_an_unknown_base_model_fails_fast(server: TinkerTestServer, tmp_path: Path) -> None:
    outcome, seconds = run(server.url, tmp_path / "run", "model.name=acme/no-such-model")
    error = outcome.record["error"]
    assert outcome.record["status"] == "failed" and seconds < FAST
    assert "does not serve model 'acme/no-such-model'" in error and "evsys/tiny-llama" in error


def test_the_key_is_never_written_down(
    server: TinkerTestServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    outcome, _ = run(
        server.url,
        tmp_path / "run",
        "algorithm.params.max_steps=2",
        "algorithm.params.save_every=1",
        "eval.n_samples=2",
        "eval.max_tokens=4",
        "log_store=jsonl_tensorboard",
    )
    record = outcome.record
    assert record["status"] == "completed", record["error"]
    assert record["config"]["backend"]["params"]["api_key_env"] == "TINKER_API_KEY"
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert len(written) >= 4  # record, metrics, hparams, artifacts, predictions, tensorboard
    for path in written:
        assert API_KEY.encode() not in path.read_bytes(), path
    out, err = capfd.readouterr()
    assert API_KEY not in out + err

    # The composed config holds the variable's name, never the key.
    done = run_evsys("backend=tinker", "--cfg", "job", cwd=tmp_path)
    assert done.returncode == 0 and "api_key_env: TINKER_API_KEY" in done.stdout
    assert API_KEY not in done.stdout + done.stderr
    # A key put in the config by mistake is refused, and not echoed back.
    done = run_evsys("backend=tinker", f"backend.params.api_key={API_KEY}", cwd=tmp_path)
    assert done.returncode == 2 and "did you mean 'api_key_env'" in done.stderr
    assert API_KEY not in done.stdout + done.stderr


def test_a_failing_arm_does_not_stop_the_sweep(server: TinkerTestServer, tmp_path: Path) -> None:
    done = run_evsys(
        "--multirun",
        "backend=tinker",
        f"backend.params.base_url={server.url}",
        "model=tiny",
        "model.name=acme/no-such-model,evsys/tiny-llama",
        "algorithm.params.max_steps=2",
        "eval=none",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        env={"TINKER_API_KEY": API_KEY},
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    records = {r["config"]["model"]["name"]: r for r in run_results(tmp_path / "sweep")}
    assert records["acme/no-such-model"]["status"] == "failed"
    assert "does not serve model" in records["acme/no-such-model"]["error"]
    assert records["evsys/tiny-llama"]["status"] == "completed"
    assert records["evsys/tiny-llama"]["artifacts"]["final_checkpoint"].startswith("tinker://")
    sweep = json.loads((tmp_path / "sweep" / "sweep_result.json").read_text())
    assert sweep and API_KEY not in json.dumps(sweep)
    assert API_KEY not in done.stdout + done.stderr
