"""Token families: revocation (one home for every reason), lookup and listing.

A family is revoked by one UPDATE of its row; every token check goes through it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy import update

from .. import signals
from ..clock import utcnow
from ..database import db
from ..models import AccessToken
from ..models import OAuth2Client
from ..models import RefreshToken
from ..models import TokenFamily
from ..models import User
from ..security import hash_token
from .audit import record_event


def revoke_families(ids: Sequence[int], reason: str, *, actor: str | None = None) -> int:
    """Revoke the live families among ``ids`` (no commit); return how many were live.

    The one home of family revocation: code replay, refresh reuse, RFC 7009, the
    user's own revocation, the CLI and the deletion of a user or client all come
    here. Each family revoked gets a ``family.revoked`` audit row naming its client
    and user (so ``authserver audit --client/--user`` finds it) and a signal.
    """
    if not ids:
        return 0
    # One UPDATE whose RETURNING says which were still live: a family revoked
    # concurrently is neither revoked again nor audited twice.
    revoked = (
        db.session.execute(
            update(TokenFamily)
            .where(TokenFamily.id.in_(ids), TokenFamily.live())
            .values(revoked_at=utcnow(), revoke_reason=reason)
            .returning(TokenFamily.id)
            .execution_options(synchronize_session=False)
        )
        .scalars()
        .all()
    )
    if not revoked:
        return 0
    names = db.session.execute(
        select(TokenFamily.id, OAuth2Client.client_id, User.username)
        .join(OAuth2Client, OAuth2Client.id == TokenFamily.oauth_client_id)
        .join(User, User.id == TokenFamily.user_id)
        .where(TokenFamily.id.in_(revoked))
        .order_by(TokenFamily.id)
    ).all()
    for family_id, client_id, username in names:
        record_event(
            "family.revoked",
            actor=actor,
            client_id=client_id,
            username=username,
            family=family_id,
            reason=reason,
        )
        signals.family_revoked.send(family_id=family_id, reason=reason)
    return len(revoked)


def revoke_family(family_id: int, *, reason: str) -> bool:
    """Revoke a family and commit; tell whether it was live."""
    revoked = revoke_families([family_id], reason) == 1
    db.session.commit()
    return revoked


def revoke_grants(
    *, user: User | None = None, oauth_client: OAuth2Client | None = None, reason: str
) -> int:
    """Revoke every live family of a user and/or client; commit; return the count."""
    stmt = select(TokenFamily.id).where(TokenFamily.live())
    if user is not None:
        stmt = stmt.where(TokenFamily.user_id == user.id)
    if oauth_client is not None:
        stmt = stmt.where(TokenFamily.oauth_client_id == oauth_client.id)
    count = revoke_families(list(db.session.scalars(stmt)), reason)
    db.session.commit()
    return count


def find_token(raw: str, hint: str | None = None) -> AccessToken | RefreshToken | None:
    """Look a token up by its digest, trying the hinted type first."""
    digest = hash_token(raw)

    def access() -> AccessToken | None:
        return db.session.scalar(select(AccessToken).where(AccessToken.token_hash == digest))

    def refresh_row() -> RefreshToken | None:
        return db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest))

    if hint == "refresh_token":
        return refresh_row() or access()
    return access() or refresh_row()


def revoke_token(token: AccessToken | RefreshToken) -> None:
    """RFC 7009: revoke an access token alone, or a refresh token with its grant; commit."""
    if isinstance(token, AccessToken):
        db.session.execute(
            update(AccessToken)
            .where(AccessToken.id == token.id, AccessToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        db.session.commit()
        return
    # RFC 7009 §2.1: revoking a refresh token SHOULD also end the access tokens of the
    # same grant; the family is that grant.
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    revoke_families([token.family_id], "client_revoked")
    db.session.commit()


def list_families(
    *, user: User | None = None, oauth_client: OAuth2Client | None = None, live_only: bool = True
) -> list[TokenFamily]:
    """Return families of a user and/or client, newest first."""
    stmt = select(TokenFamily).order_by(TokenFamily.created_at.desc(), TokenFamily.id.desc())
    if user is not None:
        stmt = stmt.where(TokenFamily.user_id == user.id)
    if oauth_client is not None:
        stmt = stmt.where(TokenFamily.oauth_client_id == oauth_client.id)
    if live_only:
        stmt = stmt.where(TokenFamily.live())
    return list(db.session.scalars(stmt))
