"""The reference app's tables, and how the bench creates and fills them.

Three tables, each with the unique digest index its workload reads by: users,
access tokens (W1/W2) and refresh tokens (W3). Tokens are stored as SHA-256 hex
digests, as authserver stores them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import Column
from sqlalchemy import DateTime
from sqlalchemy import Engine
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import insert

metadata = MetaData()

users = Table(
    "ref_users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("public_id", String(32), nullable=False, unique=True),
    Column("username", String(150), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
)
access_tokens = Table(
    "ref_access_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", ForeignKey("ref_users.id"), nullable=False),
    Column("scope", String(200), nullable=False),
    Column("issued_at", DateTime, nullable=False),
    Column("expires_at", DateTime),
    Column("revoked_at", DateTime),
)
refresh_tokens = Table(
    "ref_refresh_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", ForeignKey("ref_users.id"), nullable=False),
    Column("parent_id", Integer),
    Column("scope", String(200), nullable=False),
    Column("issued_at", DateTime, nullable=False),
    Column("rotated_at", DateTime),
)

SCOPE = "ifttt"
ACCESS_TTL = timedelta(hours=1)
CHUNK = 20_000


def digest(raw: str) -> str:
    """Return the SHA-256 hex digest a token or secret is stored and compared as."""
    return hashlib.sha256(raw.encode()).hexdigest()


def new_token() -> str:
    """Return a fresh 256-bit URL-safe token."""
    return secrets.token_urlsafe(32)


def now() -> datetime:
    """Return naive UTC now (the columns hold naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def create(engine: Engine) -> None:
    """Create the tables (the bench gives the reference an empty database)."""
    metadata.create_all(engine)


def _insert(engine: Engine, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    chunk: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for row in rows:
            chunk.append(row)
            if len(chunk) >= CHUNK:
                conn.execute(insert(table), chunk)
                chunk = []
        if chunk:
            conn.execute(insert(table), chunk)


def seed_users(engine: Engine, count: int) -> tuple[list[int], list[str]]:
    """Insert ``count`` users with one live access token each; return ids and tokens."""
    _insert(
        engine,
        users,
        (
            {
                "id": i + 1,
                "public_id": secrets.token_hex(16),
                "username": f"bench-{i:07d}",
                "name": f"Bench User {i}",
            }
            for i in range(count)
        ),
    )
    tokens = [new_token() for _ in range(count)]
    issued = now()
    _insert(
        engine,
        access_tokens,
        (
            {
                "token_hash": digest(raw),
                "user_id": i + 1,
                "scope": SCOPE,
                "issued_at": issued,
                "expires_at": issued + timedelta(days=1),
                "revoked_at": None,
            }
            for i, raw in enumerate(tokens)
        ),
    )
    return list(range(1, count + 1)), tokens


def seed_refresh_tokens(engine: Engine, user_ids: list[int], count: int) -> list[str]:
    """Insert ``count`` never-used refresh tokens, spread over the users; return them."""
    tokens = [new_token() for _ in range(count)]
    issued = now()
    _insert(
        engine,
        refresh_tokens,
        (
            {
                "token_hash": digest(raw),
                "user_id": user_ids[i % len(user_ids)],
                "parent_id": None,
                "scope": SCOPE,
                "issued_at": issued,
                "rotated_at": None,
            }
            for i, raw in enumerate(tokens)
        ),
    )
    return tokens
