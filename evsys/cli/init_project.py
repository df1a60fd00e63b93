"""``evsys init-project <name>``: scaffold a researcher's project that runs at once.

The layout of the design notes: pyproject (entry points for the project's verifiers, metrics and
transforms), conf/, experiments/, data/{raw,fetch,process,datasets,benchmark,validation}, src/,
tests/ and a README, with a tiny dataset so that its first experiment runs on the mock backend.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="directory to create; its last part names the project")
    parser.add_argument(
        "--date", help="YYYYMMDD prefix of the first experiment's file (default: today)"
    )


def execute(args: argparse.Namespace) -> int:
    from evsys.errors import ConfigError
    from evsys.report import format_problems
    from evsys.scaffold import check_date, init_project

    try:
        if args.date is not None:
            check_date(args.date)
        project = init_project(Path(args.name), day=args.date)
    except ConfigError as exc:
        print(format_problems(exc.problems, header="evsys init-project:"), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"evsys: created project '{project.name}' in {project.root} ({len(project.files)} files)")
    print(f"  cd {args.name}")
    print(f"  pip install -e .         # registers src/{project.package}/ (entry points)")
    print(f"  python -m evsys experiment={project.experiment}")
    return EXIT_OK
