"""Write a researcher's project (``evsys init-project``) and experiment files (``new-experiment``).

The project is a tree of templates under ``project/``: every ``*.tmpl`` file is copied with
``{{name}}``, ``{{package}}`` and ``{{date}}`` filled in (in its path too) and the suffix dropped;
``dot-`` at the start of a name becomes ``.`` (``.gitignore`` ships as a visible file). The tiny
dataset and task suites ship as written by the project's own data scripts, so its experiment
runs at once. The tree is built beside the target and renamed into place: a failure leaves nothing.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from evsys.errors import ConfigError, Problem

TEMPLATES = Path(__file__).resolve().parent / "project"
SUFFIX = ".tmpl"
FIRST_EXPERIMENT = "baseline"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_RESERVED = {"evsys", "hydra", "hydra_plugins", "conf", "data", "experiments", "src", "tests"}


@dataclass
class Project:
    name: str
    package: str
    root: Path
    experiment: str
    files: list[Path]


def _problem(path: str, message: str, value: object, expected: str) -> ConfigError:
    return ConfigError([Problem(path=path, message=message, value=value, expected=expected)])


def check_date(day: str) -> str:
    """``day`` when it is a real ``YYYYMMDD`` date."""
    try:
        datetime.strptime(day, "%Y%m%d")
    except ValueError:
        raise _problem("--date", f"'{day}' is not a date", day, "YYYYMMDD, e.g. 20260105") from None
    if len(day) != 8:
        raise _problem("--date", f"'{day}' is not a date", day, "YYYYMMDD, e.g. 20260105")
    return day


def package_name(project_name: str) -> str:
    """``capital-rl`` → ``capital_rl``: the importable package of the project's ``src/``."""
    expected = "a letter, then letters, digits, '-' or '_'"
    if not _NAME.match(project_name):
        raise _problem(
            "name", f"project name '{project_name}' is not usable", project_name, expected
        )
    package = project_name.lower().replace("-", "_")
    if keyword.iskeyword(package) or package in sys.stdlib_module_names or package in _RESERVED:
        raise _problem(
            "name",
            f"project name '{project_name}' gives the package '{package}', which would hide "
            "another module of the same name",
            project_name,
            "a name of its own",
        )
    return package


def init_project(root: Path, *, day: str | None = None) -> Project:
    """Write the project into ``root`` (a new or empty directory)."""
    root = Path(root).absolute()
    package = package_name(root.name)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise _problem(
            "name",
            f"{root} already exists and is not an empty directory; refusing to overwrite it",
            str(root),
            "a new directory, or an empty one",
        )
    day = day or date.today().strftime("%Y%m%d")
    values = {"name": root.name, "package": package, "date": day}
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.with_name(f".{root.name}.scaffold-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        written = [_render(t, staging, values) for t in sorted(TEMPLATES.rglob(f"*{SUFFIX}"))]
        if root.exists():
            root.rmdir()  # empty, checked above
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = sorted(root / p.relative_to(staging) for p in written)
    return Project(root.name, package, root, f"{day}_{FIRST_EXPERIMENT}", files)


def _render(template: Path, root: Path, values: dict[str, str]) -> Path:
    relative = str(template.relative_to(TEMPLATES).as_posix()).removesuffix(SUFFIX)
    parts = ["." + p[4:] if p.startswith("dot-") else p for p in relative.split("/")]
    path = root / _fill("/".join(parts), values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_fill(template.read_text(encoding="utf-8"), values), encoding="utf-8")
    return path


def _fill(text: str, values: dict[str, str]) -> str:
    # Exact placeholders only: templates hold other braces (f-strings, YAML flow mappings).
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


# -- new-experiment ---------------------------------------------------------------------------


def experiment_path(project: Path, slug: str, day: str | None = None) -> Path:
    """``<project>/experiments/<yyyymmdd>_<slug>.yaml``; a bad slug raises ConfigError."""
    if not _SLUG.match(slug):
        raise _problem(
            "slug",
            f"experiment slug '{slug}' is not usable in a file and config name",
            slug,
            "1 to 64 lower case letters, digits, '_' or '-', starting with a letter or digit",
        )
    day = day or date.today().strftime("%Y%m%d")
    return Path(project) / "experiments" / f"{day}_{slug}.yaml"


def experiment_text(project: Path, slug: str, name: str) -> str:
    """A commented experiment that validates as written; it picks the project's own data and
    eval options when its ``conf/`` has them, else evsys's bundled ones."""
    from evsys.registry import ALGORITHMS

    data = _own_option(Path(project), "data") or "tool_selection"
    eval_option = _own_option(Path(project), "eval") or "tool_selection"
    recipes = ", ".join(ALGORITHMS.names())  # what is registered here, plugins included
    return EXPERIMENT_TEMPLATE.format(
        name=name, slug=slug, data=data, eval=eval_option, recipes=recipes
    )


def _own_option(project: Path, group: str) -> str | None:
    options = sorted(p.stem for p in (project / "conf" / group).glob("*.yaml"))
    return options[0] if options else None


EXPERIMENT_TEMPLATE = """\
# @package _global_
# {slug}: what question does this experiment answer? Say it in `metadata.hypothesis` below.
#   evsys validate experiment={name}              # composes and validates, runs nothing
#   python -m evsys experiment={name}             # one run (mock backend: seconds)
#   python -m evsys experiment={name} --multirun  # every arm of hydra.sweeper.params below
#   evsys plan experiment={name}                  # the arms the sweep would launch
defaults:
  # Group choices: `evsys list` shows every option (this project's conf/ adds its own).
  - override /algorithm: sft        # {recipes}
  - override /backend: mock         # mock (instant), local (this machine), tinker (hosted)
  - override /model: tiny           # e.g. smollm2_135m, qwen3_0p6b with backend=local
  - override /data: {data}
  - override /eval: {eval}

name: {slug}
# Overrides: any key of the composed config (`evsys schema --all` lists every field).
algorithm:
  params:
    max_steps: 20
    learning_rate: 2e-5
seed: 1

metadata:
  hypothesis: "TODO: what should happen, and why."
  tags: [{slug}]
  # The metric that ranks the arms: a key of run_result.json's metrics; max or min is better.
  success_metric: {{name: eval/exact_match, direction: max}}
  # Harbor-format suites (tasks.jsonl + metadata.yaml) scored on the trained model:
  # `test` once after training, `val` in the training loop every run_every steps.
  benchmark: []
  #  - {{name: my_suite, path: data/benchmark/my_suite, tags: [test]}}
  #  - {{name: my_suite_val, path: data/validation/my_suite, tags: [val], run_every: 10}}

# Sweep axes for --multirun: every combination is one arm.
hydra:
  sweeper:
    params:
      algorithm.params.learning_rate: 1e-5,3e-5
      seed: 1,2,3
"""
