"""Override lines: parsed with Hydra's grammar (remembered across the arms of a sweep), group
choices checked against the options that exist, values applied to a config remembering which
line set each one.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Protocol

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from evsys.compose.resolution import first_line, leaf_paths
from evsys.compose.value_overrides import apply_value_overrides, keys_struct_refuses
from evsys.errors import Problem
from evsys.registry import closest


class ConfigGroups(Protocol):
    """What classifying an override needs of Hydra's config repository."""

    def group_exists(self, config_path: str) -> bool: ...

    def get_group_options(self, group_name: str) -> list[str]: ...


@cache
def parse_line(line: str) -> Override:
    # Parsing is Hydra's ANTLR grammar: worth remembering across the arms of a sweep.
    return OverridesParser.create().parse_override(line)


def parse_overrides(lines: list[str] | tuple[str, ...], problems: list[Problem]) -> list[Override]:
    parsed = []
    for line in lines:
        try:
            override = parse_line(line)
        except HydraException as exc:
            problems.append(
                Problem(
                    path=line.partition("=")[0].lstrip("+~"),
                    message=f"cannot parse override: {first_line(exc)}",
                    value=line,
                    source=f"override '{line}'",
                )
            )
            continue
        if not override.key_or_group:
            problems.append(
                Problem(
                    path="",
                    message="override has no key before '='",
                    value=line,
                    source=f"override '{line}'",
                )
            )
            continue
        if override.is_sweep_override():
            message = (
                "Hydra's own settings take one value; quote a sweep expression to pass it as "
                f"text ({override.key_or_group}='…')"
                if override.is_hydra_override()
                else "several values in a single run; add --multirun to sweep them"
            )
            problems.append(
                Problem(
                    path=override.key_or_group,
                    message=message,
                    value=override.value(),
                    source=f"override '{line}'",
                )
            )
            continue
        parsed.append(override)
    return parsed


def group_choice_is_known(
    override: Override, groups: ConfigGroups, problems: list[Problem]
) -> bool:
    group = override.key_or_group
    if override.is_delete() or not groups.group_exists(group):
        return True
    choice = override.value()
    if choice is None:
        return True  # no option
    options = groups.get_group_options(group)
    # A list selects several options at once (Hydra's multi-select); each must be one of them.
    chosen = choice if isinstance(choice, list) else [choice]
    unknown = [c for c in chosen if not isinstance(c, str) or c not in options]
    for bad in unknown:
        problems.append(
            Problem(
                path=group.replace("/", "."),
                message=f"unknown option '{bad}' for config group '{group}'",
                value=bad,
                expected=f"one of: {', '.join(options)}",
                suggestion=closest(str(bad), options),
                source=f"override '{override.input_line}'",
            )
        )
    return not unknown


def apply_override_lines(
    cfg: DictConfig, overrides: list[Override], sources: dict[str, str], problems: list[Problem]
) -> list[tuple[str, str]]:
    """Apply ``overrides``; returns the keys that plain (not ``+``) overrides added."""
    added = []
    for override in overrides:
        key = override.key_or_group
        added += [(k, override.input_line) for k in keys_struct_refuses(cfg, override)]
        try:
            apply_value_overrides([override], cfg)  # the rule Hydra's loader applies in a run
        except Exception as exc:  # Hydra's, OmegaConf's, or an assertion on a null node
            problems.append(
                Problem(
                    path=override.key_or_group,
                    message=override_error(exc),
                    value=override.value(),
                    source=f"override '{override.input_line}'",
                )
            )
            continue
        for path in [k for k in sources if k == key or k.startswith(key + ".")]:
            del sources[path]
        node = OmegaConf.select(cfg, key, throw_on_missing=False, throw_on_resolution_failure=False)
        for path in leaf_paths(node, key) if OmegaConf.is_config(node) else [key]:
            sources[path] = f"override '{override.input_line}'"
    return added


def override_error(exc: BaseException) -> str:
    """Hydra's message, without the line the report already names and OmegaConf's key dump:
    "Could not override 'x'. To append to your config use +x=1; Key 'x' not in 'Conf'"."""
    texts = [str(exc), str(exc.__cause__) if exc.__cause__ else ""]
    lines = [line.strip() for text in texts for line in text.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not _OMEGACONF_DETAIL.match(line)]
    lines = [line for line in lines if not line.startswith("Error merging override")]
    return " ".join(dict.fromkeys(lines)) or type(exc).__name__


_OMEGACONF_DETAIL = re.compile(r"(full_key|object_type|reference_type|key|value)[:=]")
