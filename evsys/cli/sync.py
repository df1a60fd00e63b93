"""``evsys sync [DIR ...]``: send what local dashboard mirrors hold to the service.

DIR defaults to ``EVSYS_LOG_DIR`` (``./evsys_sdk``); every ``*.writes.jsonl`` under each DIR is
found (a sweep keeps one mirror per arm directory). Syncing again sends nothing twice.
Exit codes: 0 synced; 2 bad input (no such directory, a mirror line that is not a write, a key
the service rejects, a write it refuses), nothing sent when found before sending; 1 the service
does not answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_UNREACHABLE, EXIT_BAD_INPUT = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dirs",
        nargs="*",
        type=Path,
        metavar="DIR",
        help="mirror directories (searched recursively); default: EVSYS_LOG_DIR or ./evsys_sdk",
    )
    parser.add_argument("--api-url", help="the service (default: EVSYS_API_URL)")
    parser.add_argument(
        "--only-unsent",
        action="store_true",
        help="skip writes the service already acknowledged (the .sent files); faster, "
        "but a service restored from an older backup needs them all",
    )


def execute(args: argparse.Namespace) -> int:
    from evsys.tracking.errors import EvsysAuthError, ServiceUnreachable
    from evsys.tracking.mirror import MirrorLineError
    from evsys.tracking.settings import Settings
    from evsys.tracking.sync import (
        SyncInputError,
        SyncReport,
        load_mirrors,
        pending_writes,
        send_all,
    )
    from evsys.tracking.transport import Transport

    try:
        settings = Settings.resolve(api_url=args.api_url, offline=False)
        dirs = args.dirs or [settings.log_dir]
        segments = load_mirrors(dirs)
    except (SyncInputError, MirrorLineError, ValueError) as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    report = SyncReport()
    pending = pending_writes(segments, only_unsent=args.only_unsent, report=report)
    for where in report.truncated:
        print(
            f"evsys sync: {where}: incomplete last line (its writer was killed mid-write); "
            "left out, the complete lines before it are synced",
            file=sys.stderr,
        )
    if not settings.api_key:
        return _fail("no API key: set EVSYS_API_KEY", EXIT_BAD_INPUT)
    transport = Transport(settings.api_url, settings.api_key)
    try:
        transport.whoami(settings.project_id)
        if pending:
            from evsys.training import progress_bar

            with progress_bar("sync", total=len(pending)) as advance:
                send_all(transport, pending, report, advance=advance)
    except EvsysAuthError as exc:
        return _fail(f"{exc.detail} (HTTP {exc.status})", EXIT_BAD_INPUT, report)
    except ServiceUnreachable as exc:
        return _fail(exc.detail, EXIT_UNREACHABLE, report)
    _print_counts(report)
    for line in report.unmarked:
        print(f"evsys sync: could not record sent ids in {line}", file=sys.stderr)
    for line in report.refused:
        print(f"evsys sync: refused by the service: {line}", file=sys.stderr)
    return EXIT_BAD_INPUT if report.refused else EXIT_OK


def _print_counts(report) -> None:
    print(
        f"synced {report.files} mirror file{'s' * (report.files != 1)}: {report.writes} writes, "
        f"{report.sent} sent ({report.applied} applied, {report.duplicates} already held), "
        f"{report.skipped_sent} skipped as sent, {len(report.refused)} refused, "
        f"{len(report.truncated)} incomplete line{'s' * (len(report.truncated) != 1)}"
    )


def _fail(message: str, code: int, report=None) -> int:
    if report is not None and report.sent:
        _print_counts(report)
    print(f"evsys sync: {message}", file=sys.stderr)
    return code
