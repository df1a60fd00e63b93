"""API keys: made, stored hashed, resolved to their project, revoked.

A key is ``evsys_`` followed by 43 URL-safe characters (256 random bits). The service keeps its
SHA-256 and a short prefix that names it in listings and in ``evsys dashboard revoke-key``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from evsys.dashboard.models import ApiKey, Project, utcnow

KEY_START = "evsys_"
PREFIX_LENGTH = len(KEY_START) + 8
PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class KeyActionError(ValueError):
    """A key operation that cannot be done (bad project name, unknown prefix)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def project_for_key(session: Session, key: str | None) -> Project | None:
    """The project a key opens; ``None`` for a missing, unknown or revoked key."""
    if not key:
        return None
    return session.execute(
        select(Project)
        .join(ApiKey, ApiKey.project_id == Project.id)
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()


def get_or_create_project(session: Session, name: str) -> Project:
    if not PROJECT_NAME.fullmatch(name):
        raise KeyActionError(
            f"project name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    project = session.execute(select(Project).where(Project.name == name)).scalar_one_or_none()
    if project is None:
        project = Project(id=uuid.uuid4().hex, name=name)
        session.add(project)
        session.flush()
    return project


def create_key(session: Session, project_name: str) -> tuple[str, ApiKey, Project]:
    """A new key for ``project_name`` (the project is created if needed); the caller commits.

    Returns ``(key, row, project)``: the key itself exists only in this return value.
    """
    project = get_or_create_project(session, project_name)
    key = KEY_START + secrets.token_urlsafe(32)
    row = ApiKey(project_id=project.id, prefix=key[:PREFIX_LENGTH], key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return key, row, project


def revoke_key(session: Session, prefix: str) -> ApiKey:
    """Revoke the key whose prefix is ``prefix`` (as ``create_key`` printed it)."""
    row = session.execute(select(ApiKey).where(ApiKey.prefix == prefix)).scalar_one_or_none()
    if row is None:
        raise KeyActionError(f"no key has the prefix {prefix!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
