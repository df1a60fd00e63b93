"""The ``evsys`` command: ``run``, ``validate``, ``plan``, ``resume``, ``results``, ``list``,
``schema``, ``diff``, ``init-project``, ``new-experiment``, ``eval``, ``deploy``, ``migrate``,
``dashboard``, ``sync``, and the dashboard's ``dataset``, ``benchmark``, ``experiments``, ``runs``.

Each subcommand lives in its own module and is imported only when used, so ``evsys --help`` and
the light commands stay fast (none of them imports torch, transformers, trl, peft or tinker).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand → (module, one-line help); `run` hands its whole command line to Hydra (evsys.app)
COMMANDS = {
    "run": (
        "evsys.app",
        "compose, validate and run (same as python -m evsys; or a reference YAML)",
    ),
    "validate": ("evsys.cli.validate", "compose and validate without running"),
    "list": ("evsys.cli.listing", "registered extensions, and the backends each recipe runs on"),
    "schema": ("evsys.cli.schema", "JSON Schema of one extension, or of everything"),
    "plan": ("evsys.cli.plan", "the arms a --multirun would launch, validated, without running"),
    "resume": ("evsys.cli.resume", "finish a sweep: skip completed arms, re-run the others"),
    "results": ("evsys.cli.results", "summarise a sweep directory from disk"),
    "diff": ("evsys.cli.diff", "what differs between two runs: resolved config and metrics"),
    "init-project": ("evsys.cli.init_project", "scaffold a researcher's project that runs at once"),
    "new-experiment": ("evsys.cli.new_experiment", "write experiments/<yyyymmdd>_<slug>.yaml"),
    "eval": ("evsys.cli.eval", "score a model on an eval set: evsys eval model --dataset …"),
    "deploy": ("evsys.cli.deploy", "ship a run's adapter: evsys deploy <run dir> --to local"),
    "dashboard": ("evsys.cli.dashboard", "the dashboard service: serve, create-key, revoke-key"),
    "sync": ("evsys.cli.sync", "send local dashboard mirrors to the service: evsys sync [DIR ...]"),
    "migrate": ("evsys.cli.migrate", "write a reference YAML file as an experiments/ file"),
    "dataset": ("evsys.cli.uploads", "evsys dataset upload NAME FILE.jsonl: a dashboard dataset"),
    "benchmark": ("evsys.cli.uploads", "evsys benchmark upload NAME DIR: a dashboard benchmark"),
    "experiments": ("evsys.cli.experiments", "the dashboard's experiments (--tag, --status)"),
    "runs": ("evsys.cli.runs", "the dashboard's runs (--experiment ID)"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":  # Hydra parses the rest of a run's command line itself
        from evsys.cli.reference_yaml import is_reference_file, run_file

        if len(argv) > 1 and is_reference_file(argv[1]):  # the reference's single YAML file
            run_file(argv[1], argv[2:])
            return
        from evsys.app import main as run_main

        run_main(argv[1:])
        return
    parser = argparse.ArgumentParser(
        prog="evsys", description="Compose, validate, sweep and inspect LLM post-training runs."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name != "run":
            importlib.import_module(module).add_arguments(sub)
    from evsys.cli.command_line import parse_with_overrides

    args = parse_with_overrides(parser, argv)  # `evsys plan x=1 --multirun y=2`, as Hydra takes it
    sys.exit(importlib.import_module(COMMANDS[args.command][0]).execute(args))
