"""A third-party package extends evsys through entry points, with no change to evsys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import install_plugin, run_evsys, run_results

PLUGIN = '''
"""An installed package that knows nothing of evsys's internals."""
from pydantic import BaseModel, ConfigDict, Field

from evsys.protocols import RunResult


class DemoAlgo:
    """Counts to `steps`; runs on every backend."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        steps: int = Field(3, gt=0)

    def __init__(self, **params):
        self.cfg = self.Config(**params)

    def train(self, ctx):
        for step in range(1, self.cfg.steps + 1):
            ctx.log_store.log_metrics({"demo/step": step}, step=step)
        return RunResult(run_id=ctx.run_id, status="completed", metrics={"demo/steps": self.cfg.steps})


class DemoMetric:
    """Always 0.5."""

    def compute(self, *, predictions, targets):
        return 0.5
'''


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    """An installed distribution: a package plus its dist-info with entry points."""
    return install_plugin(
        tmp_path / "site",
        "evsys_demo_plugin",
        PLUGIN,
        {
            "evsys.algorithms": {"demo_algo": "evsys_demo_plugin:DemoAlgo"},
            "evsys.metrics": {"demo_metric": "evsys_demo_plugin:DemoMetric"},
        },
    )


def test_entry_point_extensions_are_group_options(workdir: Path, plugin_site: Path) -> None:
    # Without the plugin installed the option does not exist…
    missing = run_evsys("algorithm=demo_algo", cwd=workdir)
    assert missing.returncode == 2
    assert "unknown option 'demo_algo'" in missing.stderr

    # …and once it is, it is an option like any other, with its Config's defaults.
    env = {"PYTHONPATH": str(plugin_site)}
    cfg = run_evsys("--cfg", "job", "algorithm=demo_algo", cwd=workdir, env=env)
    assert cfg.returncode == 0, cfg.stderr
    assert "kind: demo_algo" in cfg.stdout and "steps: 3" in cfg.stdout

    listing = json.loads(run_evsys("list", "--json", cwd=workdir, env=env, module=False).stdout)
    assert "demo_algo" in {e["name"] for e in listing["algorithm"]}
    assert "demo_metric" in {e["name"] for e in listing["metric"]}

    done = run_evsys(
        "algorithm=demo_algo",
        "algorithm.params.steps=4",
        "eval.metrics=[{kind: demo_metric}]",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    (record,) = run_results(workdir / "outputs")
    assert record["metrics"] == {"demo/steps": 4, "eval/demo_metric": 0.5}

    typo = run_evsys("algorithm=demo_algo", "algorithm.params.stpes=4", cwd=workdir, env=env)
    assert typo.returncode == 2 and "did you mean 'steps'?" in typo.stderr
