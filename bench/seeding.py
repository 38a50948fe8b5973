"""Prepare a benchmark database and fill it with users, clients and tokens.

Two ways of writing rows are used, for two reasons:

* The service layer (``issue_tokens_for``, ``create_authorization_code``,
  ``register_client``) makes the rows the server itself would make. It is used
  for the client, the resource server and the access tokens of W1/W2.
* It costs 1-2 ms per token family (seven to nine statements and a commit),
  which is minutes for the tens of thousands of single-use refresh tokens and
  codes that W3/W4 burn through. ``bulk`` mode therefore inserts that material
  with SQLAlchemy Core (COPY on PostgreSQL), column for column what the services
  write; ``--seed service`` goes through the services instead, to check that the
  bulk rows behave the same.
* Users are inserted in bulk with one shared argon2 hash: argon2 is deliberately
  slow (~50 ms a hash), and no workload logs in, so a thousand distinct hashes
  would only cost time.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from flask import current_app
from sqlalchemy import Connection
from sqlalchemy import Table
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.engine import make_url

AUTHSERVER = str(Path(sys.executable).with_name("authserver"))
REDIRECT_URI = "https://ifttt.com/channels/bench/authorize"
CLIENT_ID = "bench-ifttt"
PASSWORD = "bench password " + "x" * 12
# Codes made for the bench stay redeemable this long (the server default is 600 s,
# shorter than seeding plus a long --scale run). The server checks the stored
# expires_at, so only the seeding app gets this setting, never the server.
CODE_TTL_SECONDS = 3600
# Rows per executemany or per COPY batch: bounded memory for the 1M-token fill.
CHUNK = 20_000


# Database preparation -------------------------------------------------------------


def settle(url: str) -> None:
    """Bring freshly seeded tables to a steady state before anything is measured.

    Bulk seeding leaves PostgreSQL with unanalyzed tables and a WAL backlog: the
    autovacuum's ANALYZE and the checkpointer would otherwise run during the first
    workloads (seen: W0, which never touches the database, 20% slower). A server in
    production has long-analyzed tables, so VACUUM ANALYZE and a CHECKPOINT (SQLite:
    ANALYZE and a WAL checkpoint) are run once, up front.
    """
    if make_url(url).get_backend_name() == "postgresql":
        import psycopg

        with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")
        return
    import sqlite3

    path = make_url(url).database or ""
    with sqlite3.connect(path) as conn:
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def psycopg_conninfo(url: str, database: str | None = None) -> str:
    """Turn a SQLAlchemy PostgreSQL URL into a libpq URL (optionally another database)."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def reset_postgres(url: str) -> str:
    """Create the database if missing, empty its public schema; return the server version.

    Dropping the whole schema (not just our tables) makes every run start from the
    same state, whatever an earlier run or another version of the app left there.
    """
    import psycopg
    from psycopg import sql

    name = make_url(url).database
    if not name:
        raise SystemExit(f"--pg-url {url!r} names no database")
    try:
        with psycopg.connect(psycopg_conninfo(url, "postgres"), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if found is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
            conn.execute("CREATE SCHEMA public")
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError as error:
        raise SystemExit(f"cannot reach PostgreSQL at {url}: {error}") from None
    return str(row[0]) if row else "?"


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run an ``authserver`` command with the server's environment; return stdout."""
    result = subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [AUTHSERVER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"authserver {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


@contextmanager
def app_context(env: dict[str, str]) -> Iterator[Flask]:
    """Yield an app context configured exactly like the server (same AUTHSERVER_*).

    The bench process's own AUTHSERVER_* variables (a developer's Redis URL, say)
    must not leak in, so the environment is swapped for the server's while the app
    is built.
    """
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        from authserver import create_app

        app = create_app({"AUTH_CODE_TTL": CODE_TTL_SECONDS})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    # Every issued token writes an audit line; thousands of them would bury the output.
    logging.getLogger("authserver").setLevel(logging.WARNING)
    from authserver.database import db

    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


# Accounts and the tokens of W1/W2 ---------------------------------------------------


@dataclass
class Accounts:
    """The bench's client, resource server and users, and the W1/W2 access tokens."""

    client_id: str
    client_secret: str
    rs_id: str
    rs_secret: str
    client_pk: int = 0
    user_ids: list[int] = field(default_factory=list)
    access_tokens: list[str] = field(default_factory=list)


def seed_accounts(n_users: int) -> Accounts:
    """Create users, the IFTTT client, a resource server, one token family per user.

    Needs an app context. The access tokens come from ``issue_tokens_for``, so W1/W2
    read rows made by the service layer itself.
    """
    from authserver.clock import utcnow
    from authserver.database import db
    from authserver.models import User
    from authserver.models.user import new_public_id
    from authserver.security import hash_password
    from authserver.services import clients as client_service
    from authserver.services import tokens as token_service

    shared_hash = hash_password(PASSWORD)
    now = utcnow()
    db.session.execute(
        insert(User),
        [
            {
                "public_id": new_public_id(),
                "username": f"bench-{i:07d}",
                "name": f"Bench User {i}",
                "email": None,
                "password_hash": shared_hash,
                "disabled": False,
                "session_epoch": 0,
                "created_at": now,
            }
            for i in range(n_users)
        ],
    )
    db.session.commit()
    oauth_client, client_secret = client_service.register_client(
        "IFTTT (bench)", redirect_uris=[REDIRECT_URI], client_id=CLIENT_ID
    )
    if client_secret is None:  # a confidential client always gets one
        raise RuntimeError("register_client returned no secret for a confidential client")
    shim, rs_secret = client_service.register_resource_server("Bench shim")
    accounts = Accounts(
        CLIENT_ID, client_secret, shim.server_id, rs_secret, client_pk=oauth_client.id
    )
    users = list(db.session.scalars(select(User).order_by(User.id)))
    accounts.user_ids = [user.id for user in users]
    for user in users:
        body = token_service.issue_tokens_for(user, oauth_client, scope=None)
        accounts.access_tokens.append(body["access_token"])
    return accounts


# Single-use material (W3 refresh tokens, W4 codes) ------------------------------------


def refresh_tokens(accounts: Accounts, count: int, *, via: str) -> list[str]:
    """Return ``count`` fresh refresh tokens, each the head of its own family."""
    if via == "service":
        from authserver.database import db
        from authserver.models import OAuth2Client
        from authserver.models import User
        from authserver.services import tokens as token_service

        oauth_client = db.session.get_one(OAuth2Client, accounts.client_pk)
        users = [db.session.get_one(User, pk) for pk in accounts.user_ids]
        return [
            token_service.issue_tokens_for(users[i % len(users)], oauth_client, scope=None)[
                "refresh_token"
            ]
            for i in range(count)
        ]
    raw = [new_raw() for _ in range(count)]
    insert_families(accounts, [hash_raw(r) for r in raw], [None] * count)
    return raw


def authorization_codes(accounts: Accounts, count: int, *, via: str) -> list[str]:
    """Return ``count`` redeemable codes for the bench client and its redirect URI."""
    from authserver.clock import utcnow
    from authserver.database import db
    from authserver.models import AuthorizationCode
    from authserver.models import OAuth2Client
    from authserver.models import User
    from authserver.services import codes as code_service

    raw = [new_raw() for _ in range(count)]
    users = accounts.user_ids
    if via == "service":
        oauth_client = db.session.get_one(OAuth2Client, accounts.client_pk)
        user_rows = [db.session.get_one(User, pk) for pk in users]
        for i, code in enumerate(raw):
            code_service.create_authorization_code(
                code=code,
                oauth_client=oauth_client,
                user=user_rows[i % len(user_rows)],
                redirect_uri=REDIRECT_URI,
                scope="ifttt",
                code_challenge=None,
                code_challenge_method=None,
            )
        return raw
    now = utcnow()
    expires = now + timedelta(seconds=CODE_TTL_SECONDS)
    rows = (
        {
            "code_hash": hash_raw(code),
            "oauth_client_id": accounts.client_pk,
            "user_id": users[i % len(users)],
            "redirect_uri": REDIRECT_URI,
            "scope": "ifttt",
            "code_challenge": None,
            "code_challenge_method": None,
            "created_at": now,
            "expires_at": expires,
            "used_at": None,
            "family_id": None,
        }
        for i, code in enumerate(raw)
    )
    with db.engine.begin() as conn:
        write_rows(conn, AuthorizationCode.__table__, rows)  # type: ignore[arg-type]
    return raw


def new_raw() -> str:
    """Return a token exactly as the server makes them."""
    from authserver.security import new_token

    return new_token()


def hash_raw(raw: str) -> str:
    """Return the digest under which the server stores a token."""
    from authserver.security import hash_token

    return hash_token(raw)


# Bulk families ----------------------------------------------------------------------


def fill(accounts: Accounts, count: int) -> None:
    """Add ``count`` live token families (one access + one refresh token each).

    Nobody will ever present these tokens, so their digests are simply random
    64-hex strings: indistinguishable, to the database, from SHA-256 digests of
    real tokens, and no hashing to pay for.
    """
    done = 0
    while done < count:
        n = min(CHUNK * 5, count - done)
        insert_families(
            accounts,
            [secrets.token_hex(32) for _ in range(n)],
            [secrets.token_hex(32) for _ in range(n)],
        )
        done += n


def insert_families(
    accounts: Accounts, refresh_hashes: list[str], access_hashes: list[str | None]
) -> None:
    """Insert one family per refresh digest, like ``issue_tokens_for`` does.

    Each family gets its refresh token and an access token linked to it (with the
    given digest, or a random one when None), the scope and expiry the server
    would give, and no audit row (the audit trail plays no part in any workload).
    """
    from authserver.clock import utcnow
    from authserver.database import db
    from authserver.models import AccessToken
    from authserver.models import RefreshToken
    from authserver.models import TokenFamily

    n = len(refresh_hashes)
    now = utcnow()
    ttl = int(current_app.config["ACCESS_TOKEN_TTL"])
    expires = now + timedelta(seconds=ttl) if ttl else None
    users = accounts.user_ids
    family_table: Table = TokenFamily.__table__  # type: ignore[assignment]
    refresh_table: Table = RefreshToken.__table__  # type: ignore[assignment]
    access_table: Table = AccessToken.__table__  # type: ignore[assignment]
    with db.engine.begin() as conn:
        lock_sqlite(conn)
        family_ids = reserve_ids(conn, family_table, n)
        refresh_ids = reserve_ids(conn, refresh_table, n)
        write_rows(
            conn,
            family_table,
            (
                {
                    "id": family_ids[i],
                    "user_id": users[(family_ids[i]) % len(users)],
                    "oauth_client_id": accounts.client_pk,
                    "scope": "ifttt",
                    "created_at": now,
                    "revoked_at": None,
                    "revoke_reason": None,
                }
                for i in range(n)
            ),
        )
        write_rows(
            conn,
            refresh_table,
            (
                {
                    "id": refresh_ids[i],
                    "token_hash": refresh_hashes[i],
                    "family_id": family_ids[i],
                    "parent_id": None,
                    "issued_at": now,
                    "rotated_at": None,
                    "grace_ends_at": None,
                    "replay_count": 0,
                    "successor_ciphertext": None,
                    "revoked_at": None,
                }
                for i in range(n)
            ),
        )
        write_rows(
            conn,
            access_table,
            (
                {
                    "token_hash": access_hashes[i] or secrets.token_hex(32),
                    "family_id": family_ids[i],
                    "refresh_token_id": refresh_ids[i],
                    "scope": "ifttt",
                    "issued_at": now,
                    "expires_at": expires,
                    "revoked_at": None,
                }
                for i in range(n)
            ),
        )


def reserve_ids(conn: Connection, table: Table, n: int) -> list[int]:
    """Reserve ``n`` primary keys (the rows link to each other before they exist).

    The server may still be finishing the last requests of a run and inserting
    rows of its own, so the keys must be taken safely. PostgreSQL: draw them from
    the table's sequence. SQLite: ``lock_sqlite`` made this transaction the only
    writer, so the keys after the largest one stay free until it commits.
    """
    if n == 0:
        return []
    if conn.dialect.name == "postgresql":
        seq = conn.execute(
            text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name}
        ).scalar_one()
        return list(
            conn.execute(
                text("SELECT nextval(:s) FROM generate_series(1, :n)"), {"s": seq, "n": n}
            ).scalars()
        )
    last = int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())
    return list(range(last + 1, last + 1 + n))


def lock_sqlite(conn: Connection) -> None:
    """Start the transaction as SQLite's single writer (BEGIN IMMEDIATE).

    Python's sqlite3 begins transactions lazily, at the first INSERT; reading
    the largest id before that would race with the server's own writes.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def write_rows(conn: Connection, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    """Insert many rows: COPY on PostgreSQL, chunked executemany elsewhere."""
    if conn.dialect.name == "postgresql":
        _copy_rows(conn, table, rows)
        return
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            conn.execute(insert(table), chunk)
            chunk = []
    if chunk:
        conn.execute(insert(table), chunk)


def _copy_rows(conn: Connection, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    from psycopg import sql

    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return
    columns = list(first)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    # The COPY runs on the transaction's own connection, so it commits with the rest.
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in itertools.chain([first], iterator):
            # COPY bypasses SQLAlchemy's types: the UTCDateTime columns take naive UTC.
            copy.write_row([_naive(row[c]) for c in columns])


def _naive(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def row_counts() -> dict[str, int]:
    """Count the token tables' rows (for the scaling table)."""
    from authserver.database import db
    from authserver.models import AccessToken
    from authserver.models import RefreshToken
    from authserver.models import TokenFamily

    return {
        model.__tablename__: int(db.session.scalar(select(func.count()).select_from(model)) or 0)
        for model in (TokenFamily, AccessToken, RefreshToken)
    }
