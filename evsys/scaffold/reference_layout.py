"""``evsys new-experiment <slug> --layout reference``: the reference's experiment folder,
``experiments/<yyyymmdd>_<slug>/{config.yaml,run.py}``.

``config.yaml`` is a file in the reference's format (one ``run`` and its ``metadata``) that
validates and runs as written on the mock backend; ``run.py`` runs it as the reference's
researcher scripts do (``Experiment.from_yaml("config.yaml").run()``), importing the project's
``src`` package when it has one so its extensions are registered.
"""

from __future__ import annotations

import json
from pathlib import Path

from evsys.files import write_text_atomically

CONFIG_FILE, RUN_FILE = "config.yaml", "run.py"
_BUNDLED_TRAIN = "${evsys_data:tool_selection/train.jsonl}"


def folder_path(file_path: Path) -> Path:
    """The folder form of the single file ``experiments/<day>_<slug>.yaml``."""
    return file_path.with_suffix("")


def write_folder(project: Path, folder: Path, slug: str) -> list[Path]:
    """Write ``config.yaml`` and ``run.py`` into ``folder`` (made here); returns their paths."""
    folder.mkdir(parents=True, exist_ok=False)
    config, run = folder / CONFIG_FILE, folder / RUN_FILE
    write_text_atomically(config, config_text(project, slug, folder.name))
    write_text_atomically(run, run_text(project))
    return [config, run]


def config_text(project: Path, slug: str, name: str) -> str:
    train = _project_train_file(project) or _BUNDLED_TRAIN
    return CONFIG_TEMPLATE.format(slug=slug, name=name, train=json.dumps(train))


def run_text(project: Path) -> str:
    has_src = (Path(project) / "src" / "__init__.py").is_file() or any(
        (Path(project) / "src").glob("*/__init__.py")
    )
    imports = "import src  # noqa: F401  (registers the project's extensions)\n" if has_src else ""
    return RUN_TEMPLATE.format(imports=imports)


def _project_train_file(project: Path) -> str | None:
    """The project's first versioned training set (``data/datasets/<name>/v<N>/train.jsonl``),
    relative to the project: experiments run from its root."""
    found = sorted(Path(project).glob("data/datasets/*/v*/train.jsonl"))
    return found[0].relative_to(project).as_posix() if found else None


CONFIG_TEMPLATE = """\
# {slug}: what question does this experiment answer? Say it in metadata.hypothesis.
# The reference's format (one file: run | runs | matrix, and metadata). From the project root:
#   evsys validate experiments/{name}/config.yaml --deep
#   evsys run experiments/{name}/config.yaml -o summary.json
#   python experiments/{name}/run.py
version: 1
name: {slug}
output_dir: ./outputs
run:
  name: {slug}
  data:
    path: {train}
    transforms: [ {{ kind: jsonl_to_chat }} ]
  model: {{ name: evsys/tiny-llama }}
  algorithm: {{ kind: sft, params: {{ max_steps: 20 }} }}
  backend: {{ kind: mock }}          # local: TRL + PEFT on this machine; tinker: hosted
  eval:
    metrics: [ {{ kind: exact_match }} ]
metadata:
  hypothesis: ""
  tags: []
  success_metric: exact_match       # a reported metric, by its last name or in full
"""

RUN_TEMPLATE = """\
\"\"\"Run this experiment's config.yaml (the reference's layout): python run.py\"\"\"

from pathlib import Path

{imports}from evsys import Experiment

if __name__ == "__main__":
    Experiment.from_yaml(Path(__file__).with_name("config.yaml")).run()
"""
