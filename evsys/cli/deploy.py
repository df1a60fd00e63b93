"""``evsys deploy <run dir> --to <kind> [key=value …]``: ship a run's trained adapter.

A ``backend=tinker`` run's checkpoint is downloaded through the tinker SDK first; a
``tinker://<run>/weights/<name>`` path may stand in for the run directory.

``--to local`` merges the adapter into its base model and serves it on this machine behind an
OpenAI-compatible API (in the background); ``--to fireworks`` uploads it to Fireworks and creates
a deployment. Each deployment (target, endpoint, model id, time) is added to the run's
run_result.json under `deployments`. ``evsys deploy --stop <run dir>`` ends the run's local
servers. Params are the deployer's Config fields (`evsys schema deployer <kind>`), values in YAML.
A deploy that fails removes what it created; what it cannot remove is printed, with how to remove
it, and recorded as a `failed` entry. Deploying a run again reuses what it deployed before.
Exit codes: 0 deployed (or stopped), 1 the target failed, 2 bad input (an unknown deployer, bad
params, a missing run directory, a run without an adapter), with nothing deployed.
"""

from __future__ import annotations

import argparse
import json
import sys

from evsys.cli.key_values import parse_key_values

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "run_dir",
        help="the run directory (or its run_result.json), or a tinker://<run>/weights/<name> "
        "checkpoint (recorded in outputs/deploys/tinker-<digest>/)",
    )
    parser.add_argument(
        "params", nargs="*", metavar="KEY=VALUE", help="deployer params, e.g. port=8001"
    )
    # nargs="+": the params may follow the kind (`--to local port=8001`), as well as the run.
    parser.add_argument(
        "--to",
        nargs="+",
        metavar=("KIND", "KEY=VALUE"),
        help="the deployer (local, fireworks, …), then its params",
    )
    parser.add_argument(
        "--stop", action="store_true", help="end the run's running deployments instead"
    )
    parser.add_argument("--json", action="store_true", help="print the recorded entry as JSON")


def execute(args: argparse.Namespace) -> int:
    from evsys.errors import ConfigError, EvsysError, MissingDependencyError
    from evsys.report import format_problems

    try:
        if args.stop:
            return _stop(args)
        if not args.to:
            print("evsys deploy: name the deployer with --to <kind> (or --stop)", file=sys.stderr)
            return EXIT_BAD_INPUT
        from evsys.deploy.actions import deploy_run

        kind, params = args.to[0], [*args.params, *args.to[1:]]
        entry = deploy_run(args.run_dir, kind, parse_key_values(params, "params"))
    except ConfigError as exc:
        header = f"evsys deploy: {exc.header or 'cannot deploy:'}"
        print(format_problems(exc.problems, header=header), file=sys.stderr)
        return EXIT_BAD_INPUT
    except MissingDependencyError as exc:
        print(f"evsys deploy: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EvsysError as exc:
        print(f"evsys deploy: {args.to[0]} failed: {_failure(exc)}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(entry, indent=2))
    else:
        print(f"deployed to {entry['target']}\n  endpoint: {entry['endpoint']}")
        print(f"  model id: {entry['model_id']}")
        if entry["target"] == "local":
            print(f"  stop it:  evsys deploy --stop {_directory(args.run_dir)}")
    return EXIT_OK


def _directory(run_dir: str) -> str:
    """The directory a deploy recorded itself in: a ``tinker://`` checkpoint's is made here."""
    if not run_dir.startswith("tinker://"):
        return run_dir
    from evsys.deploy.tinker_runs import run_dir_for

    return str(run_dir_for(run_dir))


def _failure(exc: Exception) -> str:
    """The error; for a deploy that could not remove all it created, what is left, each with
    how to remove it (also recorded in the run's run_result.json)."""
    leftovers = getattr(exc, "leftovers", None)
    if not leftovers:
        return str(exc)
    lines = [getattr(exc, "error", str(exc)), "  its cleanup failed; still there (recorded):"]
    for item in leftovers:
        lines += [f"  - {item.what}: {item.why}", f"    remove it with: {item.remove}"]
    return "\n".join(lines)


def _stop(args: argparse.Namespace) -> int:
    from evsys.deploy.actions import stop_run

    if args.params or args.to:
        print("evsys deploy --stop takes only the run directory", file=sys.stderr)
        return EXIT_BAD_INPUT
    stopped = stop_run(args.run_dir)
    if args.json:
        print(json.dumps(stopped, indent=2))
    elif not stopped:
        print(f"evsys deploy: nothing of {args.run_dir} is running")
    for entry in [] if args.json else stopped:
        print(f"stopped {entry['target']} {entry['endpoint']} ({entry['stop']})")
    return EXIT_OK
