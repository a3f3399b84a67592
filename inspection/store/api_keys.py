"""Staff API keys kept in the database, stored as SHA-256 hashes (the key is shown once).

They complement the per-role keys from settings: `make_api_key_lookup` gives deps.py a function
that maps a presented key to its role, or None.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from inspection.errors import InvalidInput
from inspection.store.models import ApiKey

API_KEY_ROLES = ("station", "qa", "admin", "integration")
KEY_PREFIX = "rik_"


def hash_api_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(*, session: Session, role: str, name: str) -> str:
    """Creates a key for `role` and returns it; only its hash is stored."""
    if role not in API_KEY_ROLES:
        raise InvalidInput(f"unknown role {role!r}", hint=f"use one of: {', '.join(API_KEY_ROLES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(key_hash=hash_api_key(key), role=role, name=name))
    session.commit()
    return key


def make_api_key_lookup(*, engine: Engine) -> Callable[[str], str | None]:
    """A function mapping a presented key to its role (None if unknown or revoked)."""

    def lookup(key: str) -> str | None:
        with Session(engine) as session:
            row = session.exec(
                select(ApiKey).where(
                    ApiKey.key_hash == hash_api_key(key), col(ApiKey.revoked_at).is_(None)
                )
            ).first()
            return row.role if row else None

    return lookup
