"""OmegaConf resolvers evsys configs may use.

``${evsys_data:tool_selection/train.jsonl}`` is a file of the data bundled with evsys, so the
shipped configs run from any directory after ``pip install``.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from evsys.paths import data_dir


def _bundled_data(relative: str) -> str:
    return str(data_dir() / relative)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("evsys_data"):
        OmegaConf.register_new_resolver("evsys_data", _bundled_data)
