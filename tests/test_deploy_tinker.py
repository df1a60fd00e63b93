"""A tinker run's ``tinker://`` checkpoint deployed: downloaded through the real tinker SDK from the
Tinker-protocol test server (tests/tinker_server: ``save_weights_external``, signed URLs),
converted to a PEFT adapter that PEFT loads against the tiny base model, and shipped to the
Fireworks-protocol server (tests/fireworks_server.py), by ``evsys deploy`` and from a sweep's
best arm. Failures (refused or expired URLs, truncated or corrupt files, weights of another
shape, hostile file names) end with one clear error and leave the run as it was.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require

require("tinker", "pip install 'evsys[tinker]'", declared_by="EVSYS_REQUIRE_TINKER")
require("peft", "pip install 'evsys[local]'", declared_by="EVSYS_REQUIRE_TINKER")

import torch  # noqa: E402
from deploy_runs import record  # noqa: E402
from fireworks_server import FakeFireworks  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from safetensors.torch import load, save  # noqa: E402
from tinker_server import API_KEY, TINY, TinkerTestServer, serving_tiny  # noqa: E402

from evsys import Experiment  # noqa: E402
from evsys.cli import main  # noqa: E402
from evsys.compose.compose import compose_and_validate  # noqa: E402
from evsys.deploy.tinker_download import member_path  # noqa: E402
from evsys.deploy.tinker_runs import checked_model_id  # noqa: E402
from evsys.errors import BackendError  # noqa: E402
from evsys.run.runner import run_arm  # noqa: E402

pytestmark = pytest.mark.tinker

FW_KEY = "fw-test-key"
RANK = 64  # the tiny model's smallest linear dimension: the export is then exact


def tinker_overrides(server: TinkerTestServer) -> list[str]:
    return [
        "backend=tinker",
        f"backend.params.base_url={server.url}",
        "model=tiny",
        "algorithm.params.max_steps=2",
        "algorithm.params.learning_rate=5e-3",
        f"algorithm.params.lora_rank={RANK}",
        "eval=none",
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinkerTestServer]:
    with serving_tiny(tmp_path_factory.mktemp("tinker-server")) as running:
        yield running


@pytest.fixture(scope="module")
def trained(server: TinkerTestServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tinker SFT run (two steps), kept pristine: each test deploys a copy."""
    run_dir = tmp_path_factory.mktemp("tinker-run") / "run"
    overrides = tinker_overrides(server)
    _, config = compose_and_validate(overrides)
    outcome = run_arm(config, run_dir, overrides=overrides)
    assert outcome.record["status"] == "completed", outcome.record["error"]
    assert outcome.record["artifacts"]["final_checkpoint"].endswith("/weights/final")
    return run_dir


@pytest.fixture
def run(trained: Path, tmp_path: Path, server: TinkerTestServer) -> Iterator[Path]:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    yield copy
    exports = server.exports
    exports.refuse_urls, exports.tamper, exports.url_ttl_s = None, None, 600.0
    exports.truncate.clear()
    exports.redirect_to = None
    exports.origin = server.url.replace("127.0.0.1", "localhost")


@pytest.fixture(autouse=True)
def _fireworks_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREWORKS_API_KEY", FW_KEY)


def fireworks_params(fireworks: FakeFireworks) -> dict[str, Any]:
    return {
        "base_url": fireworks.base_url,
        "account_id": fireworks.account,
        "base_model": "accounts/fireworks/models/tiny-llama",
        "poll_interval_s": 0,
        "backoff_s": 0,
        "max_attempts": 2,
    }


# peft 0.x still reads transformers' deprecated is_gradient_checkpointing: not ours to fix.
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
def test_a_tinker_run_is_downloaded_converted_and_shipped_to_fireworks(
    server: TinkerTestServer, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from evsys.backends.models import resolve_model_path

    final = record(run)["artifacts"]["final_checkpoint"]
    downloads, events = len(server.exports.downloads), len(server.events)
    with FakeFireworks() as fireworks:
        code = _cli(["deploy", str(run), "--to", "fireworks", *_flags(fireworks_params(fireworks))])
    out = capsys.readouterr()
    assert code == 0, out.err
    (entry,) = record(run)["deployments"]
    assert entry["target"] == "fireworks" and entry["status"] == "running"

    # The adapter lies in the run's own directory, under a name of evsys's making.
    (adapter,) = (run / "deploy" / "tinker").iterdir()
    assert sorted(p.name for p in adapter.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    # What Fireworks received is that adapter, described by its own config.
    model_id = entry["details"]["model"].rpartition("/")[2]
    assert fireworks.uploads == {
        (model_id, name): (adapter / name).read_bytes()
        for name in ("adapter_config.json", "adapter_model.safetensors")
    }
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert fireworks.models[model_id]["peftDetails"]["r"] == config["r"] == RANK
    assert fireworks.models[model_id]["peftDetails"]["targetModules"] == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )

    # PEFT loads it against the tiny base; merged, it is the weights the run trained.
    path = resolve_model_path(TINY)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload().state_dict()
    trained = torch.load(server.engine._file(final), weights_only=False)["model"]
    untouched = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        assert not torch.allclose(untouched[name], trained[name], atol=1e-4)  # training moved it
        torch.testing.assert_close(merged[name], trained[name], atol=1e-4, rtol=1e-4)

    # Through the SDK's download calls; the temporary export was deleted afterwards; the signed
    # URLs (another host) never saw the Tinker key, and no file holds either key.
    kinds = {e[1] for e in server.events[events:] if e[0] == "submit"}
    assert {"load_weights", "save_weights_external"} <= kinds
    assert any(e[0] == "finish" for e in server.events[events:])  # its session was closed
    assert len(server.exports.deleted) >= 1
    fetched = server.exports.downloads[downloads:]
    assert sorted(name for name, _ in fetched) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert all("x-api-key" not in headers for _, headers in fetched)
    for file in (p for p in run.rglob("*") if p.is_file()):
        assert (
            API_KEY.encode() not in file.read_bytes() and FW_KEY.encode() not in file.read_bytes()
        )


@pytest.mark.parametrize("redirect", [False, True], ids=["served there", "redirected away"])
def test_the_key_goes_with_a_url_on_the_configured_service_only(
    server: TinkerTestServer, run: Path, redirect: bool
) -> None:
    from evsys.deploy.actions import deploy_run

    other = server.url.replace("127.0.0.1", "localhost")
    server.exports.origin = server.url  # files served by the configured Tinker URL itself
    server.exports.redirect_to = other if redirect else None
    downloads = len(server.exports.downloads)
    with FakeFireworks() as fireworks:
        deploy_run(run, "fireworks", fireworks_params(fireworks))
    fetched = [headers for _, headers in server.exports.downloads[downloads:]]
    assert len(fetched) == (4 if redirect else 2)
    for headers in fetched:
        on_the_service = headers["host"] == server.url.removeprefix("http://")
        assert headers.get("x-api-key") == (API_KEY if on_the_service else None)


def test_the_local_deployer_merges_the_downloaded_adapter(run: Path) -> None:
    """The local deployer's merge step (its server start is test_deploy_local.py's)."""
    from transformers import AutoModelForCausalLM

    from evsys.deploy.local import merge_adapter
    from evsys.deploy.runs import load_source

    adapter = load_source(run).peft_adapter()
    merge_adapter(TINY, adapter, run / "deploy" / "merged", None)
    merged = AutoModelForCausalLM.from_pretrained(run / "deploy" / "merged")
    assert merged.config.num_hidden_layers == 2
    assert load_source(run).peft_adapter() == adapter  # converted once, then reused


@pytest.mark.slow
def test_the_local_deployer_serves_a_tinker_run(run: Path) -> None:
    """``--to local`` end to end: merged, served by ``transformers serve``, answering, stopped."""
    require("fastapi", "pip install 'evsys[serve]'")
    import urllib.request

    from evsys.deploy.local import terminate

    assert _cli(["deploy", str(run), "--to", "local", "num_threads=1"]) == 0
    (entry,) = record(run)["deployments"]
    try:
        body = json.dumps(
            {
                "model": entry["model_id"],
                "messages": [{"role": "user", "content": "List the open pull requests"}],
                "max_tokens": 4,
                "temperature": 0,
            }
        ).encode()
        request = urllib.request.Request(
            f"{entry['endpoint']}/chat/completions",
            body,
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert answer["choices"][0]["message"]["content"] is not None
        assert _cli(["deploy", "--stop", str(run)]) == 0
        assert record(run)["deployments"][0]["status"] == "stopped"
    finally:
        terminate(entry["details"]["pid"], entry["details"]["process_start"])


def _garbage(files: dict[str, bytes]) -> dict[str, bytes]:
    return {**files, "adapter_model.safetensors": b"\x10\x00\x00\x00not a safetensors file"}


def _other_shapes(files: dict[str, bytes]) -> dict[str, bytes]:
    tensors = load(files["adapter_model.safetensors"])
    tensors = {k: v[:, :-1].contiguous() if "lora_A" in k else v for k, v in tensors.items()}
    return {**files, "adapter_model.safetensors": save(tensors)}


@pytest.mark.parametrize(
    ("setup", "code", "message"),
    [
        ({"refuse_urls": 403}, 1, "(HTTP 403): checkpoint access denied"),
        ({"url_ttl_s": -60.0}, 1, "HTTP 403 (the signed URL expired or was refused)"),
        ({"truncate": {"adapter_model.safetensors"}}, 1, "truncated"),
        ({"tamper": _garbage}, 1, "adapter_model.safetensors is corrupt or truncated"),
        ({"tamper": _other_shapes}, 2, "do not fit the base model evsys/tiny-llama"),
        ({"tamper": lambda f: {"../escaped.json": b"{}", **f}}, 1, "not a plain relative path"),
        ({"tamper": lambda f: {"/tmp/abs.json": b"{}", **f}}, 1, "not a plain relative path"),
        (
            {"tamper": lambda f: {"adapter_config.json": f["adapter_config.json"]}},
            1,
            "not a LoRA adapter",
        ),
    ],
    ids=["urls refused", "urls expired", "truncated", "corrupt", "other shapes", "dotdot", "abs"]
    + ["no weights"],
)
def test_a_failed_download_exits_with_one_line_and_leaves_the_run_as_it_was(
    server: TinkerTestServer,
    run: Path,
    capsys: pytest.CaptureFixture[str],
    setup: dict[str, Any],
    code: int,
    message: str,
) -> None:
    for name, value in setup.items():
        setattr(server.exports, name, value)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with FakeFireworks() as fireworks:
        got = _cli(["deploy", str(run), "--to", "fireworks", *_flags(fireworks_params(fireworks))])
    err = capsys.readouterr().err
    assert got == code, err
    assert message in err and "Traceback" not in err and API_KEY not in err
    assert fireworks.requests == []  # nothing reached Fireworks
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing half-written
    assert "deployments" not in record(run)
    assert not (run.parent / "escaped.json").exists() and not Path("/tmp/abs.json").exists()


@pytest.mark.parametrize(
    ("limit", "value", "message"),
    [
        ("MAX_FILES", 1, "listed 2 files to download, more than 1"),
        ("MAX_DOWNLOAD_BYTES", 2000, "exceed 2,000 bytes in all"),
    ],
    ids=["too many files", "too many bytes"],
)
def test_a_download_larger_than_an_adapter_is_refused(
    run: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    limit: str,
    value: int,
    message: str,
) -> None:
    """A service that lists or sends more than an adapter holds cannot fill this machine's disk:
    the limits (lowered here below the test adapter's two files) hold before and while writing."""
    from evsys.deploy import tinker_download

    monkeypatch.setattr(tinker_download, limit, value)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with FakeFireworks() as fireworks:
        got = _cli(["deploy", str(run), "--to", "fireworks", *_flags(fireworks_params(fireworks))])
    err = capsys.readouterr().err
    assert got == 1 and message in err and "Traceback" not in err, err
    assert fireworks.requests == []
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_a_stream_past_the_limit_stops_at_the_limit(tmp_path: Path) -> None:
    """Without an announced length, the bytes are counted as they arrive: one past the room and
    the file is refused; the part written is never more than the room."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    from evsys.deploy import tinker_download
    from evsys.errors import BackendError

    class Endless(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Connection", "close")  # no Content-Length: read until closed
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"x" * 1024)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/file"
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tinker_download, "MAX_DOWNLOAD_BYTES", 10_000)
            with pytest.raises(BackendError, match="exceed"):
                tinker_download.download_files(
                    {"a.bin": url},
                    tmp_path,
                    "http://service.invalid",
                    "key",
                    SimpleNamespace(request_timeout_s=10),
                )
    finally:
        server.shutdown()
        server.server_close()
    assert (tmp_path / "a.bin").stat().st_size <= 10_000


def test_a_run_directory_that_cannot_hold_the_adapter_fails_with_one_line(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run / "deploy").write_text("a file where the deploy folder goes")
    with FakeFireworks() as fireworks:
        code = _cli(["deploy", str(run), "--to", "fireworks", *_flags(fireworks_params(fireworks))])
    err = capsys.readouterr().err
    assert code == 1 and "writing the adapter under" in err and "Traceback" not in err
    assert fireworks.requests == [] and "deployments" not in record(run)


def test_sampler_weights_are_refused_before_any_request(
    server: TinkerTestServer, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = record(run)
    data["artifacts"]["final_checkpoint"] = data["artifacts"]["final_sampler_checkpoint"]
    (run / "run_result.json").write_text(json.dumps(data))
    events = len(server.events)
    with FakeFireworks() as fireworks:
        code = _cli(["deploy", str(run), "--to", "fireworks", *_flags(fireworks_params(fireworks))])
    assert code == 2
    assert "sampler weights cannot be downloaded" in capsys.readouterr().err
    assert server.events[events:] == [] and fireworks.requests == []


_PART = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.one_of(
        st.lists(
            st.sampled_from(["..", ".", "", "a", "/", "x.json"]) | _PART, min_size=1, max_size=5
        ).map("/".join),
        _PART,
    )
)
def test_a_file_name_from_the_service_never_leads_outside(tmp_path: Path, name: str) -> None:
    into = tmp_path / "download"
    try:
        target = member_path(into, name)
    except BackendError as exc:
        assert "not a plain relative path" in str(exc)
        return
    assert target.resolve().is_relative_to(into.resolve()) and target != into
    assert not any(part in ("..", ".", "") for part in name.split("/"))


def test_a_bare_tinker_path_is_deployed_from_a_directory_of_its_own(
    server: TinkerTestServer,
    trained: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TINKER_BASE_URL", server.url)
    final = record(trained)["artifacts"]["final_checkpoint"]
    with FakeFireworks() as fireworks:
        code = _cli(["deploy", final, "--to", "fireworks", *_flags(fireworks_params(fireworks))])
    assert code == 0, capsys.readouterr().err
    (made,) = (tmp_path / "outputs" / "deploys").iterdir()
    assert made.name.startswith("tinker-") and final not in made.name
    kept = record(made)
    assert kept["artifacts"]["final_checkpoint"] == final
    assert kept["config"]["model"]["name"] == TINY  # as the service's training run says
    assert [entry["status"] for entry in kept["deployments"]] == ["running"]
    (adapter,) = (made / "deploy" / "tinker").iterdir()
    assert len(fireworks.models) == 1 and (adapter / "adapter_model.safetensors").is_file()
    capsys.readouterr()
    assert _cli(["deploy", "--stop", final]) == 0  # its directory, found from the path
    assert "nothing of" in capsys.readouterr().out  # a Fireworks deployment is not stopped here


@given(name=st.one_of(st.text(max_size=30), st.sampled_from(["../x", "/etc", "a/b/c", "a/.."])))
def test_a_base_model_named_by_the_service_is_a_model_id(name: str) -> None:
    try:
        assert checked_model_id(name) == name
    except BackendError as exc:
        assert "not a model id" in str(exc)
        return
    assert not name.startswith("/") and ".." not in name and name.count("/") <= 1


def test_a_sweeps_best_arm_ships_its_tinker_checkpoint(
    server: TinkerTestServer, tmp_path: Path
) -> None:
    with FakeFireworks() as fireworks:
        params = ", ".join(f"{k}: '{v}'" for k, v in fireworks_params(fireworks).items())
        experiment = Experiment.from_overrides(
            [
                *tinker_overrides(server),
                "algorithm.params.max_steps=1",
                "seed=1,2",
                "metadata.success_metric=train/final_loss",
                f"deploy={{kind: fireworks, params: {{{params}}}}}",
            ],
            multirun=True,
        )
        result = experiment.run(tmp_path / "sweep")
    assert result.deploy_error is None
    assert result.best_arm is not None and result.best_arm.run_dir is not None
    assert result.deployment is not None and result.deployment["status"] == "running"
    best = result.best_arm.run_dir
    assert record(best)["deployments"] == [result.deployment]
    assert (best / "deploy" / "tinker").is_dir()
    others = [arm for arm in result.arms if arm.name != result.best_arm.name]
    assert others and all(not (arm.run_dir / "deploy").exists() for arm in others)
    assert len(fireworks.models) == 1


def _flags(values: dict[str, Any]) -> list[str]:
    return [f"{k}={v}" for k, v in values.items()]


def _cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)


_JSON = st.none() | st.booleans() | st.integers(-3, 70) | st.floats() | st.text(max_size=5)
_SHAPE = st.lists(st.integers(0, 70), min_size=1, max_size=3)
_MODULES = {  # (out, in) of the tiny Llama's linear layers; None: it has no such linear layer
    "model.layers.0.self_attn.q_proj": (64, 64),
    "model.layers.1.mlp.down_proj": (64, 128),
    "model.unembed_tokens": (1024, 64),
    "model.layers.9.self_attn.q_proj": None,
    "model.embed_tokens": None,
}


@settings(max_examples=40, deadline=None)
@given(
    rank=st.integers(1, 70) | _JSON,
    alpha=st.integers(1, 64) | _JSON,
    module=st.sampled_from(sorted(_MODULES)),
    shapes=st.none() | st.tuples(_SHAPE, _SHAPE),
)
def test_any_adapter_converts_or_is_refused_with_one_clear_error(
    tmp_path_factory: pytest.TempPathFactory,
    rank: Any,
    alpha: Any,
    module: str,
    shapes: tuple[list[int], list[int]] | None,
) -> None:
    """Whatever the download holds, the conversion writes a whole adapter or raises a
    ConfigError (weights that do not fit) or BackendError (not an adapter), nothing else.
    ``shapes`` None: the shapes that fit the module at ``rank``."""
    from evsys.deploy.tinker_adapter import convert
    from evsys.errors import ConfigError

    out_in = _MODULES[module] or (64, 64)
    size = rank if isinstance(rank, int) and not isinstance(rank, bool) and rank > 0 else 1
    a_shape, b_shape = shapes or ([size, out_in[1]], [out_in[0], size])
    download = tmp_path_factory.mktemp("download")
    (download / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": alpha}))
    prefix = f"base_model.model.{module}"
    tensors = {
        f"{prefix}.lora_A.weight": torch.zeros(a_shape),
        f"{prefix}.lora_B.weight": torch.zeros(b_shape),
    }
    (download / "adapter_model.safetensors").write_bytes(save(tensors))
    out = download.parent / f"{download.name}-peft"
    fits = (
        (list(a_shape), list(b_shape)) == ([size, out_in[1]], [out_in[0], size])
        and _MODULES[module] is not None
        and type(rank) is int
        and size == rank
        and isinstance(alpha, int | float)
        and not isinstance(alpha, bool)
        and 0 < alpha < float("inf")
    )
    try:
        convert(download, TINY, out)
    except (ConfigError, BackendError) as exc:
        assert str(exc) and not out.exists() and not fits
        return
    assert fits
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == rank and config["lora_alpha"] == alpha
    leaf = "lm_head" if module == "model.unembed_tokens" else module.rsplit(".", 1)[-1]
    assert config["target_modules"] == [leaf]
