"""``KEY=VALUE`` command-line arguments (a deployer's params, an inference client's ``--param``),
each value read as YAML."""

from __future__ import annotations

from typing import Any


def parse_key_values(items: list[str], path: str) -> dict[str, Any]:
    """``["port=8001", "model_id=x"]`` → ``{"port": 8001, "model_id": "x"}``; an empty value is
    ``""``. One ConfigError names every item that is not ``KEY=VALUE`` (at ``path``) and every
    value that is not YAML (at its key)."""
    import yaml

    from evsys.errors import ConfigError, Problem

    params: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(Problem(path, "expected KEY=VALUE", value=item))
            continue
        try:
            params[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            problems.append(Problem(key.strip(), "not a YAML value", value=value))
    if problems:
        raise ConfigError(problems)
    return params
