"""An arm's name: from the sweep's ``name_template``, else from the overrides that vary.

A name is the arm's directory in the sweep, so names are filesystem-safe, bounded, and unique
within the sweep. The reference SDK names a matrix's runs the same way
(:func:`evsys_sdk.expand_matrix`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Protocol

MAX_NAME_LENGTH = 80


class NamedArm(Protocol):
    """What naming reads of an arm (:class:`evsys.sweep.plan.Arm`) and sets."""

    name: str
    overrides: list[str]
    resolved: dict[str, Any]


def name_arms(arms: list[NamedArm], template: str | None) -> None:
    """Give each arm its name (``arm.name``)."""
    varying = _varying_keys(arms)
    names = [
        slug(fill(template, arm) if template else _from_overrides(arm, varying) or "arm")
        for arm in arms
    ]
    for arm, name in zip(arms, unique_names(names), strict=True):
        arm.name = name


def unique_names(names: list[str]) -> list[str]:
    """Names that repeat get ``-1``, ``-2``, …, skipping a suffix another name already is
    (``seed-1`` beside two ``seed``: ``seed-2``, ``seed-3``)."""
    taken = set(names)
    last: dict[str, int] = {}
    out = []
    for name in names:
        if names.count(name) == 1:
            out.append(name)
            continue
        n = last.get(name, 0) + 1
        while f"{name}-{n}" in taken:
            n += 1
        last[name] = n
        taken.add(f"{name}-{n}")
        out.append(f"{name}-{n}")
    return out


def _varying_keys(arms: list[NamedArm]) -> list[str]:
    """Override keys whose value is not the same in every arm, in first-seen order."""
    values: dict[str, set[str]] = {}
    for arm in arms:
        for line in arm.overrides:
            key, _, value = line.partition("=")
            values.setdefault(key, set()).add(value)
    missing_in_some = {k for k in values if any(not _has_key(a, k) for a in arms)}
    return [k for k, v in values.items() if len(v) > 1 or k in missing_in_some]


def _has_key(arm: NamedArm, key: str) -> bool:
    return any(line.partition("=")[0] == key for line in arm.overrides)


def _from_overrides(arm: NamedArm, varying: list[str]) -> str:
    parts = []
    for line in arm.overrides:
        key, _, value = line.partition("=")
        if key in varying:
            is_group = "." not in key.lstrip("+~")
            label = key.lstrip("+~").rsplit(".", 1)[-1]
            parts.append(
                _slug_value(value) if is_group and key != "seed" else label + _slug_value(value)
            )
    return "__".join(parts)


PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]+)\}")


def fill(template: str, arm: Any) -> str:
    """``{base}`` is the config's name; ``{dotted.key}`` the arm's resolved value there (``arm``:
    anything with ``resolved``, the arm's composed config as a dict)."""

    def value(match: re.Match[str]) -> str:
        path = match.group(1)
        if path == "base":
            return str(arm.resolved.get("name", "arm"))
        node: Any = arm.resolved
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return _slug_value(node)

    return PLACEHOLDER.sub(value, template)


def _slug_value(value: Any) -> str:
    """Floats as ``%g`` with ``.`` → ``p`` and no ``+`` (1e-4 → 0p0001), others as text."""
    if isinstance(value, str):
        try:
            value = float(value) if not value.lstrip("-").isdigit() else int(value)
        except ValueError:
            return value
    if isinstance(value, float):
        return f"{value:g}".replace(".", "p").replace("+", "")
    return str(value)


def slug(name: str) -> str:
    """Filesystem-safe, no slashes, bounded length (long names keep a hash for uniqueness)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "arm"
    if len(safe) <= MAX_NAME_LENGTH:
        return safe
    digest = hashlib.sha1(safe.encode()).hexdigest()[:8]
    return f"{safe[: MAX_NAME_LENGTH - 9]}-{digest}"
