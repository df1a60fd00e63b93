"""``evsys new-experiment <slug>``: write ``experiments/<yyyymmdd>_<slug>.yaml`` in this project;
with ``--layout reference``, the reference's folder ``experiments/<yyyymmdd>_<slug>/`` holding
``config.yaml`` (its format) and ``run.py`` (see :mod:`evsys.scaffold.reference_layout`).

The file is a commented template that validates as written (``evsys validate
experiment=<yyyymmdd>_<slug>``): group choices, overrides, sweep axes and the metadata
(hypothesis, tags, success metric, benchmarks) to fill in.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("slug", help="short name: lower case letters, digits, '_' and '-'")
    parser.add_argument(
        "--project", default=".", help="project directory (default: the current one)"
    )
    parser.add_argument("--date", help="YYYYMMDD prefix of the file name (default: today)")
    parser.add_argument(
        "--layout",
        choices=("file", "reference"),
        default="file",
        help="file: experiments/<date>_<slug>.yaml (Hydra); reference: the reference's folder "
        "experiments/<date>_<slug>/{config.yaml,run.py}",
    )


def execute(args: argparse.Namespace) -> int:
    from evsys.errors import ConfigError, Problem
    from evsys.files import write_text_atomically
    from evsys.report import format_problems
    from evsys.scaffold import check_date, experiment_path, experiment_text
    from evsys.scaffold.reference_layout import folder_path, write_folder

    project = Path(args.project)
    try:
        if args.date is not None:
            check_date(args.date)
        path = experiment_path(project, args.slug, args.date)
        if args.layout == "reference":
            path = folder_path(path)
        if path.exists():
            raise ConfigError(
                Problem(
                    path="slug",
                    message=f"{path} already exists; refusing to overwrite it",
                    value=args.slug,
                    expected="a slug not used today, or edit the existing file",
                )
            )
    except ConfigError as exc:
        print(format_problems(exc.problems, header="evsys new-experiment:"), file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.layout == "reference":
        written = write_folder(project, path, args.slug)
        print(f"evsys: wrote {', '.join(str(p) for p in written)}")
        print(f"  evsys validate {written[0]} --deep")
        print(f"  python {written[1]}")
        return EXIT_OK
    name = path.stem
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, experiment_text(project, args.slug, name))
    print(f"evsys: wrote {path}")
    print(f"  evsys validate experiment={name}")
    print(f"  python -m evsys experiment={name}")
    return EXIT_OK
