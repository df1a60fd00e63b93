"""The `python -m evsys` commands of the README and the docs, as written: whatever `evsys validate`
accepts of them,
`evsys plan` and the run's own Hydra composition accept too; the RL-with-a-judge command runs to
its end, its judge a local Anthropic-protocol server (tests/vendor_servers.py)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO, judged_task, run_evsys
from hydra.types import RunMode
from test_entry_points_agree import assert_agree, strict_config
from vendor_servers import AnthropicServer, rubric_judge

from evsys.compose.compose import config_loader
from evsys.compose.value_overrides import install
from evsys.errors import ConfigError
from evsys.paths import primary_config_name
from evsys.preflight import plan_sweep
from evsys.sweep.plan import bad_arms

# Hydra flags that print instead of running, and placeholders a reader fills in (a lone "…"
# stands for the rest of a command shown above it: left out).
_NOT_A_RUN = re.compile(r"--cfg|--help|--info|<[^>]*>|\w…|…\w")


def readme_commands() -> list[list[str]]:
    """Every ``python -m evsys`` command of the bash blocks of the README and of the docs' pages,
    as argument lists, each once."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    text = "\n".join(page.read_text() for page in pages)
    commands: list[list[str]] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines = block.replace("\\\n", " ").splitlines()
        while lines:
            line = lines.pop(0)
            if not line.startswith("python -m evsys"):
                continue
            while lines and line.count("'") % 2:  # a quoted value that goes on below
                line += " " + lines.pop(0).strip()
            if not _NOT_A_RUN.search(line):
                args = shlex.split(line, comments=True)[3:]
                command = [arg for arg in args if arg != "…"]
                if command not in commands:  # the README repeats a few of the docs' commands
                    commands.append(command)
    return commands


COMMANDS = readme_commands()
JUDGE_COMMAND = next(c for c in COMMANDS if any("llm_judge" in arg for arg in c))


@pytest.fixture
def project(workdir: Path) -> Path:
    """The working directory the README's commands assume: judged_tasks.jsonl in it."""
    rows = [judged_task(a, a + 3, "claude-haiku-4-5") for a in (2, 11, 25, 40)]
    (workdir / "judged_tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return workdir


def test_the_readme_commands_are_found() -> None:
    assert len(COMMANDS) >= 15
    assert any("reflection_model={kind: openai_compatible" in arg for c in COMMANDS for arg in c)
    assert "algorithm=rl" in JUDGE_COMMAND and "data.path=judged_tasks.jsonl" in JUDGE_COMMAND


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c)[:60])
def test_what_validate_accepts_of_a_readme_command_the_run_composes(
    project: Path, command: list[str]
) -> None:
    if "--multirun" not in command:
        assert_agree(command)
        return
    overrides = [arg for arg in command if arg != "--multirun"]
    try:
        arms, _ = plan_sweep(overrides)
    except ConfigError:  # the sweep itself refused: nothing is launched, nothing to compare
        return
    # Hydra composes the sweep's config (another sweeper proposes its arms from it), then each arm.
    install()
    config_loader().load_configuration(primary_config_name(), overrides, RunMode.MULTIRUN)
    for arm in arms if not bad_arms(arms) else []:
        assert strict_config(arm.overrides) is not None, arm.overrides


@pytest.mark.parametrize(
    "marker", ["verifier={kind: llm_judge", "reflection_model={kind: openai_compatible"]
)  # the proposer's client={kind: …} of an evolving sweep: a --multirun, planned above
def test_the_readme_envelope_commands_are_valid(project: Path, marker: str) -> None:
    (command,) = [c for c in COMMANDS if any(marker in arg for arg in c)]
    assert assert_agree(command), command


def test_the_readme_rl_with_a_judge_runs_as_written(project: Path) -> None:
    judge = "algorithm.params.verifier.params.judge.params"
    with AnthropicServer(api_key="sk-readme", policy=rubric_judge) as server:
        # As written, on the test suite's mock backend, shortened, its judge at the local server.
        done = run_evsys(
            *JUDGE_COMMAND,
            f"+{judge}.base_url={server.base_url}",
            "data.eval_path=null",
            "data.transforms=[]",
            "eval.enabled=false",
            "algorithm.params.max_steps=2",
            "algorithm.params.batch_size=2",
            "algorithm.params.group_size=2",
            "hydra.run.dir=out",
            cwd=project,
            env={"ANTHROPIC_API_KEY": "sk-readme"},
        )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((project / "out" / "run_result.json").read_text())
    assert record["status"] == "completed"
    assert len(server.requests) == 2 * 2 * 2  # every rollout judged
    assert {r["model"] for r in server.requests} == {"claude-haiku-4-5"}
    assert record["metrics"]["train/judge/tokens_out"] > 0
