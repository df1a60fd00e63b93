"""A reference file's translation written as an evsys experiment file (``evsys migrate``).

The translation's group choices become the file's ``defaults``, its values the file's body, and
its sweep ``hydra.sweeper``: ``python -m evsys experiment=<name>`` (``--multirun`` for a sweep)
composes the same arms, with the same configs, as ``evsys run`` on the reference file.
"""

from __future__ import annotations

from typing import Any

import yaml

from evsys.reference_yaml.translate import Translation, sweep_expression


def experiment_file(translation: Translation, *, origin: str) -> str:
    """The translation as ``experiments/<name>.yaml``: ``python -m evsys experiment=<name>``
    (``--multirun`` for a sweep) composes the same arms, with the same configs."""
    config = translation.source
    defaults = [{f"override /{group}": option} for group, option in translation.groups.items()]
    body: dict[str, Any] = {"defaults": defaults, **translation.content}
    sweeper: dict[str, Any] = {}
    if translation.axes:
        sweeper["params"] = {k: sweep_expression(v) for k, v in translation.axes.items()}
    if translation.arms:
        sweeper["arms"] = translation.arms
    if translation.n_repeats > 1:
        sweeper["n_repeats"] = translation.n_repeats
    if translation.base_seed is not None:
        sweeper["base_seed"] = translation.base_seed
    if translation.name_template is not None:
        sweeper["name_template"] = translation.name_template
    hydra: dict[str, Any] = {
        "run": {"dir": translation.dirs["run.dir"]},
        "sweep": {"dir": translation.dirs["sweep.dir"]},
    }
    if sweeper:
        hydra["sweeper"] = sweeper
    body["hydra"] = hydra
    mode = " --multirun" if translation.multirun else ""
    header = [
        "# @package _global_",
        f"# {config.name}: migrated by `evsys migrate` from {origin} (the reference's format).",
        f"#   python -m evsys experiment=<this file's name>{mode}",
        *(f"# note: {note}" for note in translation.notes),
    ]
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(header) + "\n" + text
