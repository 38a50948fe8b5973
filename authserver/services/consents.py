"""Remembered consent and the user's connected apps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..database import db
from ..models import AccessToken
from ..models import Consent
from ..models import OAuth2Client
from ..models import TokenFamily
from ..models import User
from .revocation import revoke_grants


def has_consent(user: User, oauth_client: OAuth2Client, scope: str) -> bool:
    """Tell whether the user already approved this client for every scope asked."""
    wanted = set(scope.split())
    granted = set(
        db.session.scalars(
            select(Consent.scope).where(
                Consent.user_id == user.id, Consent.oauth_client_id == oauth_client.id
            )
        )
    )
    return bool(wanted) and wanted <= granted


def grant_consent(user: User, oauth_client: OAuth2Client, scope: str) -> None:
    """Remember the user's approval of each scope; commit."""
    for item in sorted(set(scope.split())):
        exists_already = db.session.scalar(
            select(Consent.id).where(
                Consent.user_id == user.id,
                Consent.oauth_client_id == oauth_client.id,
                Consent.scope == item,
            )
        )
        if exists_already is None:
            db.session.add(Consent(user_id=user.id, oauth_client_id=oauth_client.id, scope=item))
    try:
        db.session.commit()
    except IntegrityError:
        # A concurrent approval stored the same row; the outcome is the same.
        db.session.rollback()


@dataclass(frozen=True)
class ConnectedApp:
    """A client the user has approved or holds live tokens for."""

    client_id: str
    name: str
    scopes: list[str]
    connected_at: datetime | None
    live_grants: int
    #: When the app last obtained an access token (sign-in or refresh), if ever.
    last_used_at: datetime | None = None


def connected_apps(user: User) -> list[ConnectedApp]:
    """Return the apps the user has connected, by name."""
    rows = db.session.execute(
        select(OAuth2Client, Consent)
        .join(Consent, Consent.oauth_client_id == OAuth2Client.id)
        .where(Consent.user_id == user.id)
    ).all()
    by_client: dict[int, tuple[OAuth2Client, list[str], datetime | None]] = {}
    for oauth_client, consent in rows:
        _, scopes, first = by_client.get(oauth_client.id, (oauth_client, [], None))
        scopes.append(consent.scope)
        when = consent.granted_at if first is None else min(first, consent.granted_at)
        by_client[oauth_client.id] = (oauth_client, scopes, when)
    families = (
        db.session.execute(
            select(TokenFamily.oauth_client_id).where(
                TokenFamily.user_id == user.id, TokenFamily.live()
            )
        )
        .scalars()
        .all()
    )
    for client_pk in set(families) - set(by_client):
        extra_client = db.session.get(OAuth2Client, client_pk)
        if extra_client is not None:
            by_client[client_pk] = (extra_client, [], None)
    last_used = _last_token_issued(user)
    apps = [
        ConnectedApp(
            client_id=oauth_client.client_id,
            name=oauth_client.name,
            scopes=sorted(scopes),
            connected_at=when,
            live_grants=sum(1 for f in families if f == pk),
            last_used_at=last_used.get(pk),
        )
        for pk, (oauth_client, scopes, when) in by_client.items()
    ]
    return sorted(apps, key=lambda app: app.name.lower())


def _last_token_issued(user: User) -> dict[int, datetime]:
    """Return, per client, when the user's live grants last got an access token.

    This is "last used" without a write on the hot paths: introspection and user
    info stay read-only, and an app that keeps using its access refreshes at least
    once per access-token lifetime (an hour by default), so the answer is at most
    that stale. With never-expiring access tokens it is the time of connection.
    """
    rows = db.session.execute(
        select(TokenFamily.oauth_client_id, func.max(AccessToken.issued_at))
        .join(AccessToken, AccessToken.family_id == TokenFamily.id)
        .where(TokenFamily.user_id == user.id, TokenFamily.live())
        .group_by(TokenFamily.oauth_client_id)
    ).all()
    return {client_pk: issued for client_pk, issued in rows if issued is not None}


def disconnect(user: User, oauth_client: OAuth2Client) -> int:
    """Forget consent and revoke every family of this user and client; commit."""
    db.session.execute(
        delete(Consent).where(
            Consent.user_id == user.id, Consent.oauth_client_id == oauth_client.id
        )
    )
    return revoke_grants(user=user, oauth_client=oauth_client, reason="user_revoked")
