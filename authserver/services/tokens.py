"""Token issuance and access-token lookup.

Raw tokens exist only in responses; rows hold SHA-256 digests. Every grant (code
exchange, refresh, CLI and shim issuance) inserts its tokens through ``issue``, and
every check of a presented access token goes through ``find_active_access_token*``,
whose WHERE clause is ``AccessToken.usable(now)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import true

from ..clock import epoch
from ..clock import utcnow
from ..database import connection_for_reads
from ..database import db
from ..database import read_connection
from ..errors import ValidationError
from ..models import AccessToken
from ..models import CredentialChanges
from ..models import OAuth2Client
from ..models import RefreshToken
from ..models import TokenFamily
from ..models import TokenPolicy
from ..models import User
from ..security import hash_token
from ..security import new_token
from .audit import record_event
from .statements import table

# Column collections for the hot paths' Core statements.
_access = AccessToken.__table__.c
_families = TokenFamily.__table__.c
_users = User.__table__.c
_clients = OAuth2Client.__table__.c


@dataclass(frozen=True, slots=True)
class FamilyRef:
    """The two facts about a family that issuing tokens needs."""

    id: int
    scope: str


_INSERT_FAMILY = insert(table(TokenFamily))
_INSERT_REFRESH = insert(table(RefreshToken))
_INSERT_ACCESS = insert(table(AccessToken))


def insert_family(user_id: int, oauth_client_id: int, scope: str, now: datetime) -> int:
    """Insert a new family (a grant) and return its id; no commit."""
    result = db.session.execute(
        _INSERT_FAMILY,
        {
            "user_id": user_id,
            "oauth_client_id": oauth_client_id,
            "scope": scope,
            "created_at": now,
        },
    )
    family_id: int = result.inserted_primary_key[0]  # type: ignore[attr-defined]
    return family_id


def issue(
    family: FamilyRef | TokenFamily,
    policy: TokenPolicy,
    now: datetime,
    include_refresh_token: bool,
    *,
    parent_id: int | None = None,
    reuse_refresh: tuple[int, str] | None = None,
    new_tokens: tuple[str, str] | None = None,
    access_scope: str | None = None,
) -> dict[str, Any]:
    """Insert an access token (and a new refresh token unless reusing one); no commit.

    Plain INSERTs rather than ORM objects: this runs on every code exchange and
    refresh, and nothing reads the new rows back in the same request.
    ``new_tokens`` (access, refresh) lets a caller that derived them beforehand
    choose the raw values. ``access_scope`` narrows the access token (RFC 6749 §6);
    the refresh token always keeps the family's scope.
    """
    scope = access_scope if access_scope is not None else family.scope
    access_raw, refresh_raw = new_tokens or (new_token(), new_token())
    refresh_id: int | None = None
    if reuse_refresh is not None:
        refresh_id, refresh_raw = reuse_refresh
    elif include_refresh_token:
        result = db.session.execute(
            _INSERT_REFRESH,
            {
                "token_hash": hash_token(refresh_raw),
                "family_id": family.id,
                "parent_id": parent_id,
                "issued_at": now,
                "replay_count": 0,
            },
        )
        refresh_id = result.inserted_primary_key[0]  # type: ignore[attr-defined]
    else:
        refresh_raw = None  # type: ignore[assignment]
    expires_at = now + policy.access_lifetime if policy.access_lifetime else None
    db.session.execute(
        _INSERT_ACCESS,
        {
            "token_hash": hash_token(access_raw),
            "family_id": family.id,
            "refresh_token_id": refresh_id,
            "scope": scope,
            "issued_at": now,
            "expires_at": expires_at,
        },
    )
    return token_response(access_raw, expires_at, refresh_raw, scope, now)


def issue_into_family(
    family: TokenFamily,
    oauth_client: OAuth2Client,
    *,
    include_refresh_token: bool,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Insert new tokens into an existing family under the client's policy; no commit.

    Returns the RFC 6749 §5.1 body. The same insert path as every grant, so every
    token rule applies to these tokens too.
    """
    return issue(
        family,
        oauth_client.token_policy(current_app.config),
        now or utcnow(),
        include_refresh_token,
    )


def token_response(
    access_token: str,
    expires_at: datetime | None,
    refresh_token: str | None,
    scope: str,
    now: datetime,
) -> dict[str, Any]:
    """Build the RFC 6749 §5.1 body in the shape IFTTT expects."""
    body: dict[str, Any] = {"token_type": "Bearer", "access_token": access_token}
    if expires_at is not None:
        # IFTTT's rule: with no expiry, expires_in is omitted rather than 0.
        body["expires_in"] = max(0, int((expires_at - now).total_seconds()))
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    body["scope"] = scope
    return body


@dataclass(frozen=True, slots=True)
class ActiveAccessToken:
    """What a usable access token authorizes, read in one query (no ORM objects)."""

    token_id: int
    family_id: int
    scope: str
    issued_at: datetime
    expires_at: datetime | None
    oauth_client_pk: int
    client_id: str
    user_public_id: str
    username: str
    user_name: str

    def introspection(self, issuer: str) -> dict[str, Any]:
        """Return the RFC 7662 §2.2 body for this active token."""
        body: dict[str, Any] = {
            "active": True,
            "sub": self.user_public_id,
            "username": self.username,
            "client_id": self.client_id,
            "scope": self.scope,
            "token_type": "Bearer",
            "iat": epoch(self.issued_at),
            "iss": issuer,
        }
        if self.expires_at is not None:
            body["exp"] = epoch(self.expires_at)
        return body


# Every rule of a usable access token (AccessToken.usable: not revoked or expired,
# family live, user and client enabled), evaluated by the database on one indexed row.
_ACTIVE_ACCESS_TOKEN = (
    select(
        _access.id,
        _access.family_id,
        _access.scope,
        _access.issued_at,
        _access.expires_at,
        _clients.id.label("client_pk"),
        _clients.client_id,
        _clients.scopes.label("client_scopes"),
        _users.public_id,
        _users.username,
        _users.name,
    )
    .select_from(AccessToken.__table__)
    .join(TokenFamily.__table__, _families.id == _access.family_id)
    .join(User.__table__, _users.id == _families.user_id)
    .join(OAuth2Client.__table__, _clients.id == _families.oauth_client_id)
    .where(
        _access.token_hash == bindparam("digest"),
        AccessToken.usable(bindparam("now")),
    )
)


def find_active_access_token(raw: str) -> ActiveAccessToken | None:
    """Return what the access token authorizes if it is usable now (one indexed query).

    Unknown, expired, revoked, disabled-owner and disabled-client tokens all give None.
    The scope is narrowed to what the client still holds: a scope an admin removed
    from the client stops working at once, and a token left with none is inactive.
    """
    if not raw or len(raw) > 512:
        return None
    # Core statement on the session's connection: skips the ORM's execute layer.
    with read_connection() as connection:
        row = connection.execute(
            _ACTIVE_ACCESS_TOKEN, {"digest": hash_token(raw), "now": utcnow()}
        ).first()
    return None if row is None else _active_from_row(row)


_changes = CredentialChanges.__table__.c
_active = _ACTIVE_ACCESS_TOKEN.subquery("active")
# The generation row always exists (migration 0007), so the outer join yields one
# row whether the token is usable or not.
_GENERATION_AND_ACTIVE_TOKEN = (
    select(_changes.generation, _active)
    .select_from(CredentialChanges.__table__.outerjoin(_active, true()))
    .where(_changes.id == 1)
)


def find_active_access_token_with_generation(
    raw: str,
) -> tuple[int | None, ActiveAccessToken | None]:
    """Return the credential generation and the usable access token, in one query.

    Introspection checks its caller's cached secret against that generation
    (services/clients.py), so on PostgreSQL the whole call is one round trip instead
    of two. A generation of None means it was not read (a malformed token).
    """
    if not raw or len(raw) > 512:
        return None, None
    row = (
        connection_for_reads()
        .execute(_GENERATION_AND_ACTIVE_TOKEN, {"digest": hash_token(raw), "now": utcnow()})
        .first()
    )
    if row is None:
        return None, None
    return row.generation, None if row.id is None else _active_from_row(row)


def _active_from_row(row: Any) -> ActiveAccessToken | None:
    scope = row.scope
    if any(s not in row.client_scopes for s in scope.split()):
        scope = " ".join(s for s in scope.split() if s in row.client_scopes)
        if not scope:
            return None
    return ActiveAccessToken(
        row.id,
        row.family_id,
        scope,
        row.issued_at,
        row.expires_at,
        row.client_pk,
        row.client_id,
        row.public_id,
        row.username,
        row.name,
    )


def issue_tokens_for(
    user: User, oauth_client: OAuth2Client, *, scope: str | None
) -> dict[str, Any]:
    """Mint a new family for a test account (IFTTT's test/setup); commit before return."""
    allowed = set(oauth_client.scopes)
    scope = scope or " ".join(oauth_client.scopes)
    if not scope or not set(scope.split()) <= allowed:
        raise ValidationError(
            f"scope {scope!r} is not allowed for client {oauth_client.client_id!r} "
            f"(allowed: {' '.join(oauth_client.scopes)})"
        )
    if user.disabled:
        raise ValidationError(f"user {user.username!r} is disabled")
    if oauth_client.disabled:
        raise ValidationError(f"client {oauth_client.client_id!r} is disabled")
    now = utcnow()
    family = TokenFamily(
        user_id=user.id, oauth_client_id=oauth_client.id, scope=scope, created_at=now
    )
    db.session.add(family)
    db.session.flush()
    body = issue(family, oauth_client.token_policy(current_app.config), now, True)
    record_event(
        "token.issued",
        actor="cli",
        client_id=oauth_client.client_id,
        username=user.username,
        family=family.id,
    )
    db.session.commit()
    return body
