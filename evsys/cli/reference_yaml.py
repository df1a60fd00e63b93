"""The commands on a reference YAML file: ``evsys run|validate|plan config.yaml``.

``evsys run FILE [-o OUT]`` follows the reference's CLI: the JSON summary written to ``OUT``, and
exit 0 when every run completed, else 2 (see :mod:`evsys.cli.reference_run`).

``run`` checks every arm against the file (problems name its keys and lines, exit 2, nothing
written), then hands the file's overrides to ``python -m evsys`` (:mod:`evsys.app`): the same
Hydra run, sweeper, launchers and records as any experiment.
"""

from __future__ import annotations

import json
import sys

from evsys.errors import ConfigError

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def is_reference_file(argument: str) -> bool:
    """Whether a command-line argument names a YAML file rather than an override."""
    return "=" not in argument and argument.endswith((".yaml", ".yml"))


def run_file(path: str, rest: list[str]) -> None:
    """``evsys run config.yaml [overrides] [Hydra flags]``."""
    from evsys.cli import reference_run
    from evsys.reference_yaml.api import BASE_CONFIG, experiment_from_yaml, load_yaml, plan
    from evsys.reference_yaml.translate import translate

    try:
        output, rest = reference_run.split_output(rest)
    except reference_run.OutputOptionError as exc:
        print(f"evsys: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    flags = [arg for arg in rest if arg.startswith("-")]
    overrides = [arg for arg in rest if not arg.startswith("-")]
    try:
        config = load_yaml(path)
        arms = plan(config, overrides)
        experiment = experiment_from_yaml(config, overrides)
    except ConfigError as exc:
        _print_problems(exc)
        sys.exit(EXIT_BAD_INPUT)
    if _report_bad_arms(arms, path):
        sys.exit(EXIT_BAD_INPUT)
    for note in translate(config).notes:
        print(f"evsys: {path}: {note}", file=sys.stderr)
    multirun = (
        ["--multirun"] if experiment.multirun and not {"-m", "--multirun"} & set(flags) else []
    )
    # The directories fixed now, so that the runs' records are found afterwards.
    lines = experiment.overrides + reference_run.pinned_dirs(experiment.translation.dirs, overrides)
    from evsys.app import main

    try:
        main(["--config-name", BASE_CONFIG, *multirun, *flags, *lines])
        code = EXIT_OK
    except SystemExit as exc:
        code = reference_run.exit_code_of(exc)
    swept = bool(multirun) or bool({"-m", "--multirun"} & set(flags))
    entries = reference_run.summary(reference_run.directory_of(lines, swept), swept)
    if output is not None:
        reference_run.write_summary(output, entries)
    success = arms[0].config.metadata.success_metric if arms and arms[0].config else None
    ambiguous = not swept and success and reference_run.ambiguity(success.name, entries)
    if ambiguous:  # a sweep reports this itself
        print(f"evsys: metadata.success_metric: {ambiguous}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(reference_run.reference_exit_code(code, entries))


def validate_file(path: str, overrides: list[str], *, deep: bool, as_json: bool) -> int:
    """``evsys validate config.yaml [--deep]``: the run (or each of ``runs``, the first cell of a
    matrix), or with ``deep`` every arm."""
    from evsys.reference_yaml.api import plan
    from evsys.sweep.plan import bad_arms

    try:
        arms = plan(path, overrides, deep=deep)
    except ConfigError as exc:
        problems = exc.problems
        if not as_json:
            _print_problems(exc, stream=sys.stdout)
    else:
        problems = [p for arm in bad_arms(arms) for p in arm.problems]
        if not as_json and not _report_bad_arms(arms, path, stream=sys.stdout):
            checked = f"{len(arms)} arm{'s' if len(arms) != 1 else ''}"
            print(f"evsys: {path} is valid ({checked} checked)")
    if as_json:
        payload = {"ok": not problems, "problems": [p.to_dict() for p in problems]}
        print(json.dumps(payload, indent=2, default=str))
    return EXIT_BAD_INPUT if problems else EXIT_OK


def plan_file(path: str, overrides: list[str]):
    """The arms of ``evsys plan config.yaml``; None (after the report) when the file is bad."""
    from evsys.reference_yaml.api import plan

    try:
        return plan(path, overrides)
    except ConfigError as exc:
        _print_problems(exc)
        return None


def _report_bad_arms(arms, path: str, stream=None) -> bool:
    from evsys.report import format_problems, problems_header
    from evsys.sweep.plan import bad_arms
    from evsys.sweep.sweeper import format_bad_arms

    bad = bad_arms(arms)
    if not bad:
        return False
    stream = stream or sys.stderr
    if len(arms) == 1:
        problems = bad[0].problems
        print(format_problems(problems, header=problems_header(len(problems), path)), file=stream)
    else:
        print(format_bad_arms(arms), file=stream)
    return True


def _print_problems(exc: ConfigError, stream=None) -> None:
    from evsys.report import format_problems

    print(format_problems(exc.problems, header=exc.header), file=stream or sys.stderr)
