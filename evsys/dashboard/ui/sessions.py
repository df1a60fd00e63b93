"""The UI's login session: a signed cookie naming the API key it was opened with.

The cookie holds ``{key id, project id, expiry}`` and an HMAC-SHA256 of them under a server
secret; it never holds the key. Every request re-checks the key in the database (``routes``), so
revoking a key ends its sessions at once. The secret lives in the service's file store
(``ui-session-secret``, mode 0600), so sessions survive a restart and every worker agrees on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE = "evsys_session"
MAX_AGE_S = 7 * 24 * 3600
SECRET_FILE = "ui-session-secret"


@dataclass(frozen=True)
class Session:
    key_id: str
    project_id: str
    expires: int


class SessionSigner:
    """Issues and checks session cookie values; a tampered, foreign or expired one reads as None."""

    def __init__(self, secret: bytes):
        if len(secret) < 32:
            raise ValueError("the session secret needs at least 32 bytes")
        self._secret = secret

    def issue(self, key_id: str, project_id: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + MAX_AGE_S)
        payload = json.dumps({"k": str(key_id), "p": str(project_id), "e": expires})
        body = _b64(payload.encode())
        return f"{body}.{self._sign(body)}"

    def read(self, value: str | None, now: float | None = None) -> Session | None:
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            claims = json.loads(_unb64(body))
            session = Session(str(claims["k"]), str(claims["p"]), int(claims["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > (time.time() if now is None else now) else None

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())


def load_or_create_secret(store_dir: str | os.PathLike[str]) -> bytes:
    """The store's session secret, created (32 random bytes, 0600) on first use. Two processes
    starting together agree: the file is created exclusively and the loser reads the winner's."""
    path = Path(store_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "wb") as file:
        file.write(secrets.token_bytes(32))
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    for _ in range(50):  # another process may have created it and not yet written its bytes
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
        time.sleep(0.01)
    raise RuntimeError(f"{path} holds no session secret; delete it to make a new one")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
