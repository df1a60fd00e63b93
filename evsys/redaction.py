"""Secrets kept out of records and messages: which keys name one, and their values masked.

At the bottom of the package (standard library only), so that errors, records and the service
client can all redact without importing one another.
"""

from __future__ import annotations

import re
from typing import Any

# Key names whose values are secrets: api_key, TINKER_API_KEY, hf_token, client_secret, password…
# Anchored at the end so that max_tokens or secret_santa_count stay visible.
_SECRET_KEY = re.compile(
    r"(^|[._-])(api[_-]?key|token|secret|password|passwd|credentials?|auth)$", re.IGNORECASE
)
REDACTED = "<redacted>"


def is_secret_key(name: str) -> bool:
    """Whether a key (or a dotted path ending in one) names a secret."""
    return bool(_SECRET_KEY.search(str(name)))


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if _SECRET_KEY.search(str(k)) and v else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redact_override(line: str) -> str:
    """``backend.params.api_key=tml-…`` → ``backend.params.api_key=<redacted>``."""
    key, sep, value = line.partition("=")
    return f"{key}{sep}{REDACTED}" if sep and value and _SECRET_KEY.search(key) else line
