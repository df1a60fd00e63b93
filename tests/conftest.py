"""Shared fixtures: registry isolation, subprocess runs of the CLI, a scratch working directory."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

# Tests compose from base.yaml (mock backend, tiny model, no experiment), not from the default
# experiment, which trains SmolLM2; a test of the default experiment names config.yaml itself.
os.environ["EVSYS_CONFIG_NAME"] = "base"

# The dashboard service's fixtures (`dashboard`, `fresh_dashboard`), for every module that tests
# against it; the module imports nothing of the service until a fixture is used.
pytest_plugins = ["dashboard_server"]


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the group-node cache of the test session out of the user's cache."""
    previous = os.environ.get("EVSYS_CACHE_DIR")
    os.environ["EVSYS_CACHE_DIR"] = str(tmp_path_factory.mktemp("evsys-cache"))
    yield
    if previous is None:
        os.environ.pop("EVSYS_CACHE_DIR", None)
    else:
        os.environ["EVSYS_CACHE_DIR"] = previous


@pytest.fixture(autouse=True, scope="session")
def _offline_hub() -> Iterator[None]:
    """Nothing may be downloaded: the Hugging Face hub client is told it is offline."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        try:
            import huggingface_hub.constants
        except ImportError:
            pass  # without the local stack nothing could download anyway
        else:
            mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture
def clean_registries() -> Iterator[None]:
    """Restore every registry after a test registers throw-away extensions.

    Without it a test's extension leaks into later tests (hydra-zen's ``clean_store`` guards
    against the same thing for Hydra's ConfigStore).
    """
    from evsys import registry

    saved = {kind: r.snapshot() for kind, r in registry.REGISTRIES.items()}
    implementations = dict(registry._IMPLEMENTATIONS)
    yield
    for kind, state in saved.items():
        registry.REGISTRIES[kind].restore(state)
    registry._IMPLEMENTATIONS.clear()
    registry._IMPLEMENTATIONS.update(implementations)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch project directory as the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_evsys(
    *args: str,
    cwd: Path,
    module: bool = True,
    env: dict[str, str] | None = None,
    timeout: int = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m evsys ARGS`` (or the ``evsys`` command with module=False) in ``cwd``."""
    command = [sys.executable, "-m", "evsys"] if module else [sys.executable, "-m", "evsys.cli"]
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [*command, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def require(module: str, install: str, *, declared_by: str = "EVSYS_REQUIRE_LOCAL") -> Any:
    """Import ``module``, or skip — or fail, in a run that declares it must have it (CI does)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        unavailable(f"needs {module}: {install}", declared_by=declared_by)


def unavailable(message: str, *, declared_by: str = "EVSYS_REQUIRE_LOCAL") -> None:
    """Skip for a missing resource; fail instead when ``declared_by=1`` says the run must have it."""
    if os.environ.get(declared_by) == "1":
        pytest.fail(f"{message} ({declared_by}=1: this run must have it)", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def install_plugin(
    site: Path, package: str, source: str, entry_points: dict[str, dict[str, str]]
) -> Path:
    """An installed distribution in ``site``: ``package`` with ``source`` as its ``__init__``, and
    a dist-info declaring ``entry_points`` (group → name → object). Put ``site`` on PYTHONPATH."""
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(source)
    dist_info = site / f"{package}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    sections = [
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in names.items())
        for group, names in entry_points.items()
    ]
    (dist_info / "entry_points.txt").write_text("\n".join(sections))
    return site


def run_in_process(overrides: list[str], run_dir: Path) -> Any:
    """Compose, validate and run one arm in this process, as ``python -m evsys`` would."""
    from evsys.compose.compose import compose_and_validate
    from evsys.run.runner import run_arm

    _, config = compose_and_validate(overrides)
    return run_arm(config, run_dir, overrides=overrides)


def metrics_lines(run_dir: Path) -> list[dict[str, Any]]:
    """Every line of a run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def run_results(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("run_result.json"))]


def harbor_tasks_rewarding_digits(directory: Path) -> tuple[list[str], list[tuple[str, float]]]:
    """Four harbor tasks whose in-process verifier ``digit_share_of`` (registered here: use the
    ``clean_registries`` fixture) rewards the share of digits in a completion, scaled by 0.5.
    Returns the overrides of an RL run on them (2 steps × 2 tasks × 2 samples, the recipe's own
    verifier ignored) and the verifier's calls, as ``(expected, scale)``, filled as it runs."""
    from evsys.verifiers import register_verifier_fn

    calls: list[tuple[str, float]] = []

    @register_verifier_fn("digit_share_of")
    def digit_share_of(completion: str, expected: str, scale: float = 1.0) -> float:
        calls.append((expected, scale))
        return scale * sum(c.isdigit() for c in completion) / max(len(completion), 1)

    verifier = {"kind": "in_process", "fn_name": "digit_share_of", "params": {"scale": 0.5}}
    tasks = [
        {
            "task_id": f"t{i}",
            "instruction": f"What is {i} + {i}?",
            "verifier": {**verifier, "expected": str(2 * i)},
        }
        for i in range(4)
    ]
    path = directory / "tasks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    overrides = [
        "algorithm=rl",
        "eval=none",
        "data.source_kind=jsonl",
        f"data.path={path}",
        "data.eval_path=null",
        "data.transforms=[]",
        "algorithm.params.verifier.kind=format_only",  # rows with a verifier of their own ignore it
        "algorithm.params.max_steps=2",
        "algorithm.params.batch_size=2",
        "algorithm.params.group_size=2",
        "algorithm.params.max_tokens=8",
    ]
    return overrides, calls


def doc_files() -> list[Path]:
    """The README and every page of the docs site: where the documented examples live."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def doc_block(heading: str, index: int = 0, language: str = "python") -> str:
    """The ``index``-th ``language`` block of the section under ``heading`` (the whole heading
    line, ``### Callbacks``): the heading must head exactly one section of the README and the
    docs pages, so a moved section is still found and a duplicated one is an error, not a pick."""
    found = [
        (path, text)
        for path in doc_files()
        for text in [f"\n{path.read_text()}"]
        for _ in range(text.count(f"\n{heading}\n"))
    ]
    if len(found) != 1:
        where = ", ".join(os.path.relpath(path, REPO) for path, _ in found) or "nowhere"
        raise LookupError(f"{heading!r} heads {len(found)} sections of the docs ({where}), not 1")
    path, text = found[0]
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    blocks = re.findall(rf"```{language}\n(.*?)```", section, re.S)
    if index >= len(blocks):
        raise LookupError(f"{heading!r} in {path.name} has {len(blocks)} {language} blocks")
    return blocks[index]


def flow(value: Any) -> str:
    """``value`` as a Hydra override value (YAML flow style, strings quoted)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def judged_task(a: int, b: int, judge_model: str = "judge-1") -> dict[str, Any]:
    """A harbor arithmetic task judged by its rubric (the test judges score `contains: …`
    rubrics), with the reference answer the mock learns."""
    answer = f"<answer>{a + b}</answer>"
    return {
        "task_id": f"sum-{a}-{b}",
        "instruction": f"What is {a} + {b}?",
        "verifier": {
            "kind": "llm_judge",
            "judge_model": judge_model,
            "rubric": f"contains: {answer}",
        },
        "metadata": {"answer": answer},
    }
