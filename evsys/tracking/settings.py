"""Where the client sends to and mirrors into: the reference's env vars, overridden by arguments."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_API_URL = "http://localhost:8000"
DEFAULT_LOG_DIR = "./evsys_sdk"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    api_url: str
    api_key: str | None
    project_id: str | None
    log_dir: Path
    offline: bool

    @classmethod
    def resolve(
        cls,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        project_id: str | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Arguments win over ``EVSYS_API_URL``, ``EVSYS_API_KEY``, ``EVSYS_PROJECT_ID``,
        ``EVSYS_LOG_DIR`` and ``EVSYS_OFFLINE``; those win over the defaults."""
        env = os.environ if environ is None else environ
        _apply_logging_level(env.get("EVSYS_LOGGING_LEVEL"))
        return cls(
            api_url=(api_url or env.get("EVSYS_API_URL") or DEFAULT_API_URL).rstrip("/"),
            api_key=api_key or env.get("EVSYS_API_KEY") or None,
            project_id=project_id or env.get("EVSYS_PROJECT_ID") or None,
            log_dir=Path(log_dir or env.get("EVSYS_LOG_DIR") or DEFAULT_LOG_DIR),
            offline=_flag(env.get("EVSYS_OFFLINE", "")) if offline is None else offline,
        )


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"EVSYS_OFFLINE={text!r} is not a flag; use 1/true or 0/false")


def _apply_logging_level(level: str | None) -> None:
    if level:
        logging.getLogger("evsys.tracking").setLevel(level.strip().upper())
