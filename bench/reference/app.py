"""The reference app: Flask and SQLAlchemy Core doing the least each workload needs.

Configured by the environment (bench/run.py sets it):

  REFERENCE_DATABASE_URL          SQLite file or PostgreSQL (psycopg) URL
  REFERENCE_ISSUER                the ``iss`` of introspection answers
  REFERENCE_RS_ID / _RS_DIGEST    the resource server's id and secret's SHA-256 digest
  REFERENCE_CLIENT_ID / _DIGEST   the OAuth client's id and secret's SHA-256 digest

Routes, one per workload (same paths as authserver, so one wrk script drives both):

  W0  GET  /healthz               a JSON hello
  W1  POST /oauth/introspect      Basic checked in memory, one indexed SELECT of the
                                  token's digest joined to its user, RFC 7662 JSON
  W2  GET  /ifttt/v1/user/info    one indexed SELECT joined to the user, IFTTT's envelope
  W3  POST /oauth/token           client checked in memory, then one transaction: a
                                  conditional UPDATE ... RETURNING that claims the refresh
                                  token, an INSERT of its successor, an INSERT of the
                                  access token

The database engine gets authserver's settings: SQLite in WAL mode with the same
pragmas; PostgreSQL with the same pool, timeouts, and reads outside a transaction.
It has no rate limits, no request log, no metrics and no security headers: that is
the point, it is the floor authserver's per-request extras are measured against.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import sqlite3
from typing import Any

from flask import Flask
from flask import Response
from flask import request
from sqlalchemy import Engine
from sqlalchemy import bindparam
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update

from bench.reference.schema import ACCESS_TTL
from bench.reference.schema import access_tokens
from bench.reference.schema import digest
from bench.reference.schema import new_token
from bench.reference.schema import now
from bench.reference.schema import refresh_tokens
from bench.reference.schema import users

JSON = "application/json"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
TIMEOUT_SECONDS = 5

_ACCESS = (
    select(
        access_tokens.c.scope,
        access_tokens.c.issued_at,
        access_tokens.c.expires_at,
        users.c.public_id,
        users.c.username,
        users.c.name,
    )
    .select_from(access_tokens.join(users, users.c.id == access_tokens.c.user_id))
    .where(
        access_tokens.c.token_hash == bindparam("digest"),
        access_tokens.c.revoked_at.is_(None),
        or_(access_tokens.c.expires_at.is_(None), access_tokens.c.expires_at > bindparam("now")),
    )
)
_CLAIM = (
    update(refresh_tokens)
    .where(
        refresh_tokens.c.token_hash == bindparam("digest"),
        refresh_tokens.c.rotated_at.is_(None),
    )
    .values(rotated_at=bindparam("now"))
    .returning(refresh_tokens.c.id, refresh_tokens.c.user_id, refresh_tokens.c.scope)
)
_INSERT_REFRESH = insert(refresh_tokens)
_INSERT_ACCESS = insert(access_tokens)


def make_engine(url: str) -> Engine:
    """Create the engine with authserver's settings for this database."""
    if url.startswith("postgresql"):
        return create_engine(
            url,
            pool_size=5,
            max_overflow=5,
            pool_timeout=TIMEOUT_SECONDS,
            connect_args={
                "connect_timeout": TIMEOUT_SECONDS,
                "options": f"-c statement_timeout={TIMEOUT_SECONDS * 1000}",
            },
        )
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: sqlite3.Connection, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def epoch(value: Any) -> int:
    """Return seconds since the epoch of a naive UTC datetime."""
    return int((value - EPOCH).total_seconds())


EPOCH = now().replace(year=1970, month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    """Answer with a JSON body that no cache may keep."""
    return Response(json.dumps(body), status, NO_STORE, mimetype=JSON)


def basic_credentials() -> tuple[str, str] | None:
    """Return the (id, secret) of an HTTP Basic header, or None."""
    scheme, _, encoded = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if colon else None


def create_app(environ: dict[str, str] | None = None) -> Flask:
    """Build the reference app from REFERENCE_* settings."""
    env = os.environ if environ is None else environ
    engine = make_engine(env["REFERENCE_DATABASE_URL"])
    # PostgreSQL reads skip BEGIN/ROLLBACK, as authserver's hot reads do.
    reads = (
        engine.execution_options(isolation_level="AUTOCOMMIT")
        if engine.dialect.name == "postgresql"
        else engine
    )
    issuer = env["REFERENCE_ISSUER"]
    rs_id, rs_digest = env["REFERENCE_RS_ID"], env["REFERENCE_RS_DIGEST"]
    client_id, client_digest = env["REFERENCE_CLIENT_ID"], env["REFERENCE_CLIENT_DIGEST"]
    app = Flask(__name__)

    def caller_is(expected_id: str, expected_digest: str, found: tuple[str, str] | None) -> bool:
        return (
            found is not None
            and found[0] == expected_id
            and hmac.compare_digest(digest(found[1]), expected_digest)
        )

    def active_token(raw: str) -> Any:
        with reads.connect() as conn:
            return conn.execute(_ACCESS, {"digest": digest(raw), "now": now()}).first()

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status": "ok"}', mimetype=JSON)

    @app.post("/oauth/introspect")
    def introspect() -> Response:
        if not caller_is(rs_id, rs_digest, basic_credentials()):
            return json_response({"error": "invalid_client"}, 401)
        row = active_token(request.form.get("token", ""))
        if row is None:
            return json_response({"active": False})
        body = {
            "active": True,
            "sub": row.public_id,
            "username": row.username,
            "client_id": client_id,
            "scope": row.scope,
            "token_type": "Bearer",
            "iat": epoch(row.issued_at),
            "iss": issuer,
        }
        if row.expires_at is not None:
            body["exp"] = epoch(row.expires_at)
        return json_response(body)

    @app.get("/ifttt/v1/user/info")
    def user_info() -> Response:
        scheme, _, raw = (request.headers.get("Authorization") or "").partition(" ")
        row = active_token(raw) if scheme.lower() == "bearer" else None
        if row is None:
            return json_response({"errors": [{"message": "Invalid access token."}]}, 401)
        return json_response({"data": {"id": row.public_id, "name": row.name}})

    @app.post("/oauth/token")
    def token() -> Response:
        form = request.form
        found = basic_credentials() or (form.get("client_id", ""), form.get("client_secret", ""))
        if not caller_is(client_id, client_digest, found):
            return json_response({"error": "invalid_client"}, 401)
        if form.get("grant_type") != "refresh_token":
            return json_response({"error": "unsupported_grant_type"}, 400)
        issued = now()
        access_raw, refresh_raw = new_token(), new_token()
        with engine.begin() as conn:
            claimed = conn.execute(
                _CLAIM, {"digest": digest(form.get("refresh_token", "")), "now": issued}
            ).first()
            if claimed is None:
                conn.rollback()
                return json_response({"error": "invalid_grant"}, 400)
            conn.execute(
                _INSERT_REFRESH,
                {
                    "token_hash": digest(refresh_raw),
                    "user_id": claimed.user_id,
                    "parent_id": claimed.id,
                    "scope": claimed.scope,
                    "issued_at": issued,
                },
            )
            conn.execute(
                _INSERT_ACCESS,
                {
                    "token_hash": digest(access_raw),
                    "user_id": claimed.user_id,
                    "scope": claimed.scope,
                    "issued_at": issued,
                    "expires_at": issued + ACCESS_TTL,
                },
            )
        return json_response(
            {
                "token_type": "Bearer",
                "access_token": access_raw,
                "expires_in": int(ACCESS_TTL.total_seconds()),
                "refresh_token": refresh_raw,
                "scope": claimed.scope,
            }
        )

    return app
