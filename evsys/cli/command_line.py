"""Command lines that mix flags and Hydra overrides in any order.

Hydra's parser takes its overrides as one positional list (``nargs="*"``), and argparse before
Python 3.12 fills such a list from one run of tokens only: ``python -m evsys experiment=x
--multirun`` parses, ``python -m evsys experiment=x --multirun seed=1,2`` does not ("unrecognized
arguments"). People put ``--multirun`` wherever they like (``evsys migrate`` prints it last), so
evsys puts Hydra's flags first before Hydra parses the line, and its own commands that take
overrides (``validate``, ``plan``) gather them from anywhere on the line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def hydra_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with Hydra's flags (and the value each takes) first, then the overrides, each
    group in its order: what Hydra's parser reads, on any Python, as Hydra means it."""
    from hydra._internal.utils import get_args_parser

    options = {
        name: action for action in get_args_parser()._actions for name in action.option_strings
    }
    flags: list[str] = []
    overrides: list[str] = []
    tokens = list(argv)
    position = 0
    while position < len(tokens):
        token = tokens[position]
        position += 1
        name, inline, _ = token.partition("=")
        action = options.get(name) if token.startswith("-") else None
        if token == "--":  # everything after it is an override, as argparse reads it
            overrides += tokens[position:]
            break
        if action is None:
            overrides.append(token)
            continue
        flags.append(token)
        if inline or action.nargs == 0:
            continue
        if action.nargs is None and position < len(tokens):  # one value: `--config-name x`
            flags.append(tokens[position])
            position += 1
        elif action.nargs == "?" and position < len(tokens):  # `--info [what]`
            following = tokens[position]
            if not following.startswith("-") and following in (action.choices or ()):
                flags.append(following)
                position += 1
    return flags + overrides


def parse_with_overrides(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that a command's ``overrides`` gather from anywhere on
    the line (``evsys plan seed=1,2 --multirun hydra.sweep.dir=x``), in their order."""
    args, extra = parser.parse_known_args(list(argv))
    unknown = [token for token in extra if token.startswith("-")]
    if unknown or (extra and not isinstance(getattr(args, "overrides", None), list)):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args
