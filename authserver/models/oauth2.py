"""OAuth 2.0 clients, resource servers, secrets, consents, codes and token families.

Every token belongs to a family (one per authorization). Validity is checked through
the family, so revoking a whole grant is a single UPDATE of one row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import Boolean
from sqlalchemy import CheckConstraint
from sqlalchemy import ColumnElement
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import and_
from sqlalchemy import or_
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from ..clock import utcnow
from ..database import Model
from ..database import UTCDateTime
from .user import User

GRANT_TYPES = ("authorization_code", "refresh_token")
CONFIDENTIAL_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
#: Refresh profiles: each platform that links accounts by OAuth has its own refresh
#: rules (README "Refresh policies"); ifttt is the server-wide settings.
PROFILES = ("ifttt", "google", "alexa", "strict")
# Alexa treats a refresh answer without expires_in as expiring at once; when the
# server issues non-expiring access tokens, an alexa client still gets this lifetime.
ALEXA_FALLBACK_ACCESS_SECONDS = 3600


@dataclass(frozen=True)
class TokenPolicy:
    """The token rules in force for one client.

    ``grace`` None means "until the successor is first used" (no time bound); then
    every replay also mints a fresh access token, since the rotation's may be old.
    """

    profile: str
    access_lifetime: timedelta | None
    rotation: bool
    grace: timedelta | None
    max_replays: int
    reuse_revokes_family: bool

    @property
    def fresh_access_on_replay(self) -> bool:
        """Tell whether each replay gets a new access token (Google's rule)."""
        return self.grace is None


class CredentialSecret(Model):
    """A hashed secret of an OAuth client or a resource server.

    At most two are live per owner: the current one and, during a rotation overlap,
    the previous one with ``expires_at`` set.
    """

    __tablename__ = "credential_secrets"
    __table_args__ = (
        CheckConstraint(
            "(oauth_client_id IS NULL) <> (resource_server_id IS NULL)",
            name="one_owner",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    oauth_client_id: Mapped[int | None] = mapped_column(
        ForeignKey("oauth2_clients.id", ondelete="CASCADE"), index=True
    )
    resource_server_id: Mapped[int | None] = mapped_column(
        ForeignKey("resource_servers.id", ondelete="CASCADE"), index=True
    )
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def is_expired(self, now: datetime) -> bool:
        """Tell whether the secret's overlap has ended."""
        return self.expires_at is not None and now >= self.expires_at


class _SecretHolder:
    """Shared secret checking for clients and resource servers."""

    secrets: list[CredentialSecret]
    disabled: bool

    def live_secrets(self, now: datetime | None = None) -> list[CredentialSecret]:
        """Return the secrets that still authenticate, newest first."""
        moment = now or utcnow()
        live = [s for s in self.secrets if not s.is_expired(moment)]
        return sorted(live, key=lambda s: (s.created_at, s.id), reverse=True)


class ClientRulesMixin:
    """What Authlib asks of a client, from plain attributes.

    Shared by the OAuth2Client model and services.clients.AuthenticatedClient (the
    token endpoint's client, read with its secret in one Core query), so the rules
    exist once whichever object carries them. What the services read of either is
    the ``services.interfaces.ClientRules`` Protocol.
    """

    id: int
    client_id: str
    redirect_uris: list[str]
    scopes: list[str]
    is_confidential: bool
    disabled: bool
    access_token_lifetime: int | None
    refresh_grace_lifetime: int | None
    refresh_profile: str | None
    refresh_rotation: bool | None
    refresh_grace_until_used: bool | None
    refresh_reuse_revokes_family: bool | None

    def get_client_id(self) -> str:
        """Return the public client identifier."""
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """Return the only registered redirect URI, or None when there are several."""
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Return the requested scopes this client may have (its defaults if none)."""
        if not scope:
            return " ".join(self.scopes)
        allowed = set(self.scopes)
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Match a redirect URI exactly, character for character (RFC 9700 §4.1.3)."""
        return redirect_uri in self.redirect_uris

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Confidential clients use a secret; public clients use none."""
        if self.disabled:
            return False
        if self.is_confidential:
            return method in CONFIDENTIAL_AUTH_METHODS
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        """Only the authorization code flow exists here (no implicit grant)."""
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        """Allow the code and refresh grants."""
        return grant_type in GRANT_TYPES

    def token_policy(self, settings: Mapping[str, Any]) -> TokenPolicy:
        """Combine the client's profile and overrides with the server-wide settings.

        Everything it reads is on the client object the caller already holds: no query.
        """
        # Without a profile of its own: ifttt for a confidential client, strict for a
        # public one.
        profile = self.refresh_profile or ("ifttt" if self.is_confidential else "strict")
        # The profiles: ifttt is the server-wide settings (today's behaviour); the others
        # are fixed by their platform's documented rules.
        rotation = bool(settings["REFRESH_ROTATION"])
        grace: timedelta | None = timedelta(seconds=int(settings["REFRESH_GRACE_SECONDS"]))
        reuse_revokes = bool(settings["REFRESH_REUSE_REVOKES_FAMILY"])
        if profile == "google":
            rotation, grace, reuse_revokes = True, None, True
        elif profile == "alexa":
            rotation, grace, reuse_revokes = False, timedelta(0), True
        elif profile == "strict":
            rotation, grace, reuse_revokes = True, timedelta(0), True
        if self.refresh_rotation is not None:
            rotation = self.refresh_rotation
        if self.refresh_grace_until_used:
            grace = None
        elif self.refresh_grace_lifetime is not None:
            grace = timedelta(seconds=self.refresh_grace_lifetime)
        if self.refresh_reuse_revokes_family is not None:
            reuse_revokes = self.refresh_reuse_revokes_family
        seconds = (
            self.access_token_lifetime
            if self.access_token_lifetime is not None
            else int(settings["ACCESS_TOKEN_TTL"])
        )
        access = timedelta(seconds=seconds) if seconds else None
        if profile == "alexa" and access is None:
            access = timedelta(seconds=ALEXA_FALLBACK_ACCESS_SECONDS)
        return TokenPolicy(
            profile=profile,
            access_lifetime=access,
            rotation=rotation,
            grace=grace,
            max_replays=int(settings["REFRESH_MAX_REPLAYS"]),
            reuse_revokes_family=reuse_revokes,
        )


class OAuth2Client(ClientRulesMixin, _SecretHolder, Model):
    """A registered OAuth client such as IFTTT."""

    __tablename__ = "oauth2_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_confidential: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Per-client overrides in whole seconds; NULL means the server-wide setting.
    access_token_lifetime: Mapped[int | None] = mapped_column(Integer)
    refresh_grace_lifetime: Mapped[int | None] = mapped_column(Integer)
    # Refresh policy (ClientRulesMixin.token_policy): a profile (NULL: ifttt for confidential
    # clients, strict for public ones) and overrides of it (NULL: the profile's value).
    refresh_profile: Mapped[str | None] = mapped_column(String(16))
    refresh_rotation: Mapped[bool | None] = mapped_column(Boolean)
    refresh_grace_until_used: Mapped[bool | None] = mapped_column(Boolean)
    refresh_reuse_revokes_family: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    secrets: Mapped[list[CredentialSecret]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="select"
    )

    @classmethod
    def enabled(cls) -> ColumnElement[bool]:
        """Return the SQL condition of an enabled client (its tokens work)."""
        return cls.__table__.c.disabled.is_(False)


class ResourceServer(_SecretHolder, Model):
    """A shim or API that introspects tokens."""

    __tablename__ = "resource_servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    secrets: Mapped[list[CredentialSecret]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="select"
    )


class Consent(Model):
    """A user's remembered approval of a client for a scope."""

    __tablename__ = "consents"
    __table_args__ = (
        UniqueConstraint("user_id", "oauth_client_id", "scope", name="user_client_scope"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    oauth_client_id: Mapped[int] = mapped_column(
        ForeignKey("oauth2_clients.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(500))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TokenFamily(Model):
    """One authorization: every token issued from one code (or one CLI issue)."""

    __tablename__ = "token_families"
    __table_args__ = (Index("ix_token_families_user_client", "user_id", "oauth_client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    oauth_client_id: Mapped[int] = mapped_column(
        ForeignKey("oauth2_clients.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoke_reason: Mapped[str | None] = mapped_column(String(40))

    user: Mapped[User] = relationship(lazy="joined")
    oauth_client: Mapped[OAuth2Client] = relationship(lazy="joined")

    @classmethod
    def live(cls) -> ColumnElement[bool]:
        """Return the SQL condition of a family not revoked (its tokens may work)."""
        return cls.__table__.c.revoked_at.is_(None)


class AuthorizationCode(Model):
    """A single-use authorization code, stored only as its hash."""

    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    oauth_client_id: Mapped[int] = mapped_column(
        ForeignKey("oauth2_clients.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # NULL when the authorization request named none (the client's only registered
    # URI was used): RFC 6749 §4.1.3 then does not require it at the token endpoint.
    redirect_uri: Mapped[str | None] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(500))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    family_id: Mapped[int | None] = mapped_column(
        ForeignKey("token_families.id", ondelete="SET NULL"), index=True
    )

    user: Mapped[User] = relationship(lazy="joined")


class RefreshToken(Model):
    """A refresh token (hash only) and its place in the rotation chain.

    ``parent_id`` is UNIQUE, so a token can never get two successors: a concurrent
    second rotation fails at the database instead of forking the family.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[int] = mapped_column(
        ForeignKey("token_families.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("refresh_tokens.id", ondelete="CASCADE"), unique=True
    )
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set once, by the atomic claim that rotates this token.
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    grace_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    replay_count: Mapped[int] = mapped_column(default=0)
    # What replays this token's rotation within its grace window: the 32-byte seed
    # its successor pair was derived from with this token as the key (v2), or, for
    # rows rotated before v2, that pair sealed with AES-GCM. Erased at first use of
    # the successor or at the window's end. The column keeps its v1 name so that
    # both releases read one column and no migration is needed.
    successor_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    family: Mapped[TokenFamily] = relationship(lazy="joined")

    @classmethod
    def unspent(cls) -> ColumnElement[bool]:
        """Return the SQL condition of a token neither rotated nor revoked."""
        columns = cls.__table__.c
        return and_(columns.rotated_at.is_(None), columns.revoked_at.is_(None))


class AccessToken(Model):
    """A bearer access token (hash only)."""

    __tablename__ = "access_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[int] = mapped_column(
        ForeignKey("token_families.id", ondelete="CASCADE"), index=True
    )
    refresh_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("refresh_tokens.id", ondelete="SET NULL"), index=True
    )
    scope: Mapped[str] = mapped_column(String(500))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    family: Mapped[TokenFamily] = relationship(lazy="joined")

    @classmethod
    def unexpired(cls, now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
        """Return the SQL condition of a token still within its lifetime at ``now``."""
        expires_at = cls.__table__.c.expires_at
        return or_(expires_at.is_(None), expires_at > now)

    @classmethod
    def usable(cls, now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
        """Return the SQL condition of a token that authorizes calls at ``now``.

        Not revoked, not expired, its family live, its user and client enabled: the
        statement must join the token's family, user and client.
        """
        return and_(
            cls.__table__.c.revoked_at.is_(None),
            cls.unexpired(now),
            TokenFamily.live(),
            User.enabled(),
            OAuth2Client.enabled(),
        )
