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
        if path.name != "config.yaml":
            assert "python -m evsys" in path.read_text(), path
