"""Authorization codes: creation, lookup, single-use redemption and replay.

A code's row holds its SHA-256 digest only. A code is consumed by one conditional
UPDATE whose rowcount decides the winner, so a race has exactly one; a code
presented again revokes the family it started (RFC 6749 §4.1.2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy import update

from .. import signals
from ..clock import utcnow
from ..database import db
from ..errors import GrantError
from ..models import AuthorizationCode
from ..models import OAuth2Client
from ..models import User
from ..security import hash_token
from .interfaces import ClientRules
from .revocation import revoke_families
from .tokens import FamilyRef
from .tokens import insert_family
from .tokens import issue

security_log = logging.getLogger("authserver.security")

_users = User.__table__.c


def create_authorization_code(
    *,
    code: str,
    oauth_client: OAuth2Client,
    user: User,
    redirect_uri: str | None,
    scope: str,
    code_challenge: str | None,
    code_challenge_method: str | None,
) -> None:
    """Store a new code (its hash) bound to client, user, URI, scope and PKCE; commit.

    ``redirect_uri`` is the one the authorization request named, or None when it
    named none (RFC 6749 §4.1.3 then asks for none at the token endpoint).
    """
    now = utcnow()
    lifetime = timedelta(seconds=current_app.config["AUTH_CODE_TTL"])
    db.session.add(
        AuthorizationCode(
            code_hash=hash_token(code),
            oauth_client_id=oauth_client.id,
            user_id=user.id,
            redirect_uri=redirect_uri,
            scope=scope,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    db.session.commit()


@dataclass(frozen=True, slots=True)
class RedeemableCode:
    """An unused, unexpired authorization code and what it is bound to (no ORM).

    Carries what Authlib's grant and PKCE checks read (redirect URI, scope,
    code_challenge) and what redemption needs about the user.
    """

    id: int
    user_id: int
    redirect_uri: str | None
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    user_public_id: str
    user_disabled: bool

    def get_redirect_uri(self) -> str | None:
        """Return the redirect URI the authorization request named, if any."""
        return self.redirect_uri

    def get_scope(self) -> str:
        """Return the scope the code grants."""
        return self.scope


_codes = AuthorizationCode.__table__.c
_PRESENTED_CODE = (
    select(
        _codes.id,
        _codes.oauth_client_id,
        _codes.user_id,
        _codes.redirect_uri,
        _codes.scope,
        _codes.code_challenge,
        _codes.code_challenge_method,
        _codes.expires_at,
        _codes.used_at,
        _users.public_id,
        _users.disabled,
    )
    .select_from(AuthorizationCode.__table__)
    .join(User.__table__, _users.id == _codes.user_id)
    .where(_codes.code_hash == bindparam("digest"))
)


def find_authorization_code(code: str, oauth_client: ClientRules) -> RedeemableCode | None:
    """Return a redeemable code of this client, or None.

    A code that was already used is a replay: RFC 6749 §4.1.2 says the tokens issued
    from it SHOULD be revoked, which happens here (and is committed) before None.
    """
    row = db.session.connection().execute(_PRESENTED_CODE, {"digest": hash_token(code)}).first()
    if row is None or row.oauth_client_id != oauth_client.id:
        return None
    if row.used_at is not None:
        _handle_code_replay(row.id, oauth_client)
        return None
    if utcnow() >= row.expires_at:
        return None
    return RedeemableCode(
        row.id,
        row.user_id,
        row.redirect_uri,
        row.scope,
        row.code_challenge,
        row.code_challenge_method,
        row.public_id,
        row.disabled,
    )


def _handle_code_replay(code_id: int, oauth_client: ClientRules) -> None:
    db.session.rollback()
    family_id = db.session.scalar(
        select(AuthorizationCode.family_id).where(AuthorizationCode.id == code_id)
    )
    security_log.warning(
        "authorization code replayed client_id=%s family=%s", oauth_client.client_id, family_id
    )
    if family_id is not None:
        revoke_families([family_id], "code_replay")
    db.session.commit()


def redeem_authorization_code(
    code: RedeemableCode, *, oauth_client: ClientRules, include_refresh_token: bool
) -> dict[str, Any]:
    """Consume a code and issue the first tokens of a new family; commit.

    :raises GrantError: when the code was consumed meanwhile (a replay or a race).
    """
    now = utcnow()
    family_id = insert_family(code.user_id, oauth_client.id, code.scope, now)
    # RFC 6749 §4.1.2: single use. The conditional UPDATE is the claim; of two
    # concurrent redemptions exactly one sees rowcount 1 (the other's family is
    # rolled back with it).
    claimed = db.session.execute(
        update(AuthorizationCode)
        .where(
            AuthorizationCode.id == code.id,
            AuthorizationCode.used_at.is_(None),
            AuthorizationCode.expires_at > now,
        )
        .values(used_at=now, family_id=family_id)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        _handle_code_replay(code.id, oauth_client)
        raise GrantError("The authorization code was already used or has expired.")
    family = FamilyRef(family_id, code.scope)
    body = issue(family, oauth_client.token_policy(current_app.config), now, include_refresh_token)
    db.session.commit()
    signals.token_issued.send()
    return body
