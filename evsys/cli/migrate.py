"""``evsys migrate config.yaml [--out experiments/<name>.yaml]``: a reference YAML file as an evsys
experiment file, with its ``hydra.sweeper`` axes; it composes the same arms and configs."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a YAML file in the reference's format (run, runs or matrix)")
    parser.add_argument(
        "--out", help="the experiment file to write (default: experiments/<name>.yaml)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing file")


def execute(args: argparse.Namespace) -> int:
    from evsys.errors import ConfigError
    from evsys.files import write_text_atomically
    from evsys.reference_yaml.api import load_yaml, migrate, validate_yaml
    from evsys.report import format_problems, problems_header

    try:
        config = load_yaml(args.path)
    except ConfigError as exc:
        print(format_problems(exc.problems, header=exc.header), file=sys.stderr)
        return EXIT_BAD_INPUT
    # What does not run as a reference file would not run migrated either: refuse it here.
    problems = validate_yaml(config)
    if problems:
        header = problems_header(len(problems), args.path)
        print(format_problems(problems, header=header), file=sys.stderr)
        return EXIT_BAD_INPUT
    out = Path(args.out) if args.out else Path("experiments") / f"{_option_name(config.name)}.yaml"
    if out.suffix != ".yaml" or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", out.stem):
        print(
            f"evsys: --out {out}: an experiment file is <name>.yaml, the name letters, digits, "
            "'_', '-' and '.' (it is chosen as experiment=<name>)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if out.exists() and not args.force:
        print(f"evsys: {out} exists; --force replaces it", file=sys.stderr)
        return EXIT_BAD_INPUT
    out.parent.mkdir(parents=True, exist_ok=True)
    text = migrate(config).replace("<this file's name>", out.stem)
    write_text_atomically(out, text)
    sweep = " --multirun" if "--multirun" in text.splitlines()[2] else ""
    print(f"evsys: wrote {out}; run it with: python -m evsys experiment={out.stem}{sweep}")
    if out.parent.resolve() != (Path.cwd() / "experiments").resolve():
        print("  (from a folder holding it as experiments/<name>.yaml)")
    return EXIT_OK


def _option_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-") or "migrated"
