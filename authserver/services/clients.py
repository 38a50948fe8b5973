"""Register and manage OAuth clients and resource servers, and their secrets."""

from __future__ import annotations

import logging
import secrets as std_secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import joinedload

from ..clock import format_utc
from ..clock import utcnow
from ..config import is_loopback_host
from ..database import connection_for_reads
from ..database import db
from ..errors import ConflictError
from ..errors import NotFoundError
from ..errors import ValidationError
from ..models import CredentialSecret
from ..models import OAuth2Client
from ..models import ResourceServer
from ..models import TokenFamily
from ..models.oauth2 import ClientRulesMixin
from ..security import hash_token
from ..security import new_token
from .audit import record_event
from .interfaces import ClientRules
from .policies import check_profile
from .policies import describe_policy
from .revocation import revoke_families

log = logging.getLogger(__name__)

DEFAULT_SCOPES = ("ifttt",)
DEFAULT_OVERLAP = timedelta(hours=24)
# Writing last_used_at on every call would turn the hot introspection path into a
# write path; once a minute is precise enough to see when IFTTT switched secrets.
LAST_USED_RESOLUTION = timedelta(seconds=60)

Holder = TypeVar("Holder", OAuth2Client, ResourceServer)


@dataclass(frozen=True)
class IssuedSecret:
    """A newly issued secret, shown once, and when the previous one stops working."""

    owner_id: str
    secret: str
    old_secret_expires_at: datetime | None
    ended_early: int


def validate_redirect_uri(uri: str) -> str:
    """Check a redirect URI is absolute, without fragment, and https unless loopback.

    :raises ValidationError: naming what is wrong.
    """
    uri = uri.strip()
    if not uri or len(uri) > 2000:
        raise ValidationError("redirect URI must be 1 to 2000 characters")
    if any(ch.isspace() or not ch.isprintable() for ch in uri):
        raise ValidationError(f"redirect URI {uri!r} must not contain spaces or control characters")
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise ValidationError(f"redirect URI {uri!r} is not a valid URL") from None
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValidationError(f"redirect URI {uri!r} must be an absolute http(s) URL")
    if parts.fragment or "#" in uri:
        # RFC 6749 §3.1.2: the redirection endpoint URI MUST NOT include a fragment.
        raise ValidationError(f"redirect URI {uri!r} must not contain a fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValidationError(f"redirect URI {uri!r} must use https")
    return uri


def _check_scopes(scopes: list[str]) -> list[str]:
    cleaned: list[str] = []
    for scope in scopes:
        # RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        if (
            not scope
            or len(scope) > 100
            or any(ch in ' "\\' or not 0x21 <= ord(ch) <= 0x7E for ch in scope)
        ):
            raise ValidationError(f"invalid scope {scope!r}")
        if scope not in cleaned:
            cleaned.append(scope)
    return cleaned


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or "\x00" in name:
        raise ValidationError("name must be 1 to 200 characters")
    return name


def check_lifetimes(
    *,
    access_token_lifetime: int | None,
    refresh_grace_lifetime: int | None,
    default_access: int,
    default_grace: int,
) -> None:
    """Refuse negative lifetimes and a grace period longer than the access lifetime.

    :raises ValidationError: naming the value at fault.
    """
    for label, value in (
        ("access token lifetime", access_token_lifetime),
        ("grace period", refresh_grace_lifetime),
    ):
        if value is not None and value < 0:
            raise ValidationError(f"{label} must not be negative")
    access = default_access if access_token_lifetime is None else access_token_lifetime
    grace = default_grace if refresh_grace_lifetime is None else refresh_grace_lifetime
    if access and grace > access:
        raise ValidationError(
            f"grace period ({grace}s) must not exceed the access token lifetime ({access}s)"
        )


def _new_secret(owner: OAuth2Client | ResourceServer) -> str:
    raw = new_token()
    owner.secrets.append(CredentialSecret(secret_hash=hash_token(raw)))
    return raw


@dataclass(frozen=True)
class PolicyChange:
    """A refresh profile and overrides to set on a client (None: leave as is).

    Choosing a profile clears the client's refresh overrides (rotation, grace,
    reuse), except those given in the same change: a profile means its own rules.
    """

    profile: str | None = None
    rotation: bool | None = None
    grace_seconds: int | None = None
    grace_until_used: bool = False
    reuse_revokes_family: bool | None = None
    access_ttl: int | None = None

    def apply_to(self, oauth_client: OAuth2Client) -> list[str]:
        """Set these values on the client (no flush); return the names changed."""
        changes: list[str] = []
        if self.profile is not None:
            oauth_client.refresh_profile = check_profile(self.profile)
            oauth_client.refresh_rotation = None
            oauth_client.refresh_grace_lifetime = None
            oauth_client.refresh_grace_until_used = None
            oauth_client.refresh_reuse_revokes_family = None
            changes.append("refresh_profile")
        if self.rotation is not None:
            oauth_client.refresh_rotation = self.rotation
            changes.append("refresh_rotation")
        if self.grace_until_used:
            oauth_client.refresh_grace_until_used = True
            oauth_client.refresh_grace_lifetime = None
            changes.append("refresh_grace")
        elif self.grace_seconds is not None:
            oauth_client.refresh_grace_until_used = None
            oauth_client.refresh_grace_lifetime = self.grace_seconds
            changes.append("refresh_grace")
        if self.reuse_revokes_family is not None:
            oauth_client.refresh_reuse_revokes_family = self.reuse_revokes_family
            changes.append("refresh_reuse_revokes_family")
        if self.access_ttl is not None:
            oauth_client.access_token_lifetime = self.access_ttl
            changes.append("access_token_lifetime")
        return changes


def _check_policy(oauth_client: OAuth2Client) -> None:
    """Refuse a policy its platform could not work with.

    :raises ValidationError: naming the setting at fault.
    """
    for label, value in (
        ("access token lifetime", oauth_client.access_token_lifetime),
        ("grace period", oauth_client.refresh_grace_lifetime),
    ):
        if value is not None and value < 0:
            raise ValidationError(f"{label} must not be negative")
    policy = oauth_client.token_policy(current_app.config)
    if policy.profile == "alexa" and oauth_client.access_token_lifetime == 0:
        raise ValidationError(
            "the alexa profile needs expiring access tokens (Alexa requires expires_in); "
            "choose --access-ttl above 0"
        )
    grace, access = policy.grace, policy.access_lifetime
    if grace is not None and access and grace > access:
        # A time-bounded replay hands back the rotation's access token: it must still live.
        raise ValidationError(
            f"grace period ({int(grace.total_seconds())}s) must not exceed the access "
            f"token lifetime ({int(access.total_seconds())}s)"
        )


def _new_client_id() -> str:
    """Return a random client id (144 bits) that begins with a letter or a digit.

    URL-safe base64 may begin with "-", and an admin's ``authserver clients show
    -Ox...`` would then read the id as an option.
    """
    while True:
        candidate = std_secrets.token_urlsafe(18)
        if candidate[0].isalnum():
            return candidate


def register_client(
    name: str,
    *,
    redirect_uris: list[str],
    scopes: list[str] | None = None,
    public: bool = False,
    client_id: str | None = None,
    policy: PolicyChange | None = None,
) -> tuple[OAuth2Client, str | None]:
    """Register a client and commit; return it with its secret (None if public).

    ``policy`` chooses the refresh profile and overrides (default: ifttt for a
    confidential client, strict for a public one).

    :raises ValidationError: for a bad name, URI, scope or policy.
    :raises ConflictError: when the requested client id is taken.
    """
    name = _check_name(name)
    if not redirect_uris:
        raise ValidationError("at least one --redirect-uri is required")
    uris = []
    for uri in redirect_uris:
        checked = validate_redirect_uri(uri)
        if checked not in uris:
            uris.append(checked)
    scope_list = _check_scopes(list(scopes) if scopes else list(DEFAULT_SCOPES))
    if client_id is not None:
        if (
            not client_id
            or len(client_id) > 64
            or not client_id.isascii()
            or any(ch.isspace() or ch == ":" or not ch.isprintable() for ch in client_id)
        ):
            raise ValidationError("client id must be 1-64 ASCII characters, no spaces or ':'")
        if get_client(client_id) is not None:
            raise ConflictError(f"client {client_id!r} already exists")
    oauth_client = OAuth2Client(
        client_id=client_id or _new_client_id(),
        name=name,
        redirect_uris=uris,
        scopes=scope_list,
        is_confidential=not public,
    )
    if policy is not None:
        policy.apply_to(oauth_client)
    _check_policy(oauth_client)
    db.session.add(oauth_client)
    secret = None if public else _new_secret(oauth_client)
    record_event(
        "client.created",
        actor="cli",
        client_id=oauth_client.client_id,
        refresh_policy=describe_policy(oauth_client.token_policy(current_app.config)),
    )
    if secret is not None:
        record_event("secret.created", actor="cli", client_id=oauth_client.client_id)
    db.session.commit()
    return oauth_client, secret


def get_client(client_id: str) -> OAuth2Client | None:
    """Return the client with this id, if any (disabled ones included)."""
    # No id holds NUL (PostgreSQL refuses it in a query, so ask nothing).
    if not client_id or len(client_id) > 64 or "\x00" in client_id:
        return None
    return db.session.scalar(select(OAuth2Client).where(OAuth2Client.client_id == client_id))


def require_client(client_id: str) -> OAuth2Client:
    """Return the client with this id.

    :raises NotFoundError: when there is none.
    """
    oauth_client = get_client(client_id)
    if oauth_client is None:
        raise NotFoundError(f"no client with id {client_id!r}")
    return oauth_client


def list_clients() -> list[OAuth2Client]:
    """Return every client, oldest first."""
    return list(db.session.scalars(select(OAuth2Client).order_by(OAuth2Client.id)))


def delete_client(client_id: str) -> None:
    """Delete a client and with it every token and code it holds; commit.

    Live families are revoked first so the trail shows which grants ended; the
    database cascade then removes the rows.
    """
    oauth_client = require_client(client_id)
    live = select(TokenFamily.id).where(
        TokenFamily.oauth_client_id == oauth_client.id, TokenFamily.live()
    )
    revoke_families(list(db.session.scalars(live)), "client_deleted", actor="cli")
    record_event("client.deleted", actor="cli", client_id=oauth_client.client_id)
    db.session.delete(oauth_client)
    db.session.commit()


def update_client(
    client_id: str,
    *,
    name: str | None = None,
    add_redirect_uris: list[str] | None = None,
    remove_redirect_uris: list[str] | None = None,
    scopes: list[str] | None = None,
    access_token_lifetime: int | None = None,
    refresh_grace_lifetime: int | None = None,
    clear_lifetimes: bool = False,
    disabled: bool | None = None,
    policy: PolicyChange | None = None,
    default_access: int,
    default_grace: int,
) -> OAuth2Client:
    """Apply the given changes to a client and commit.

    A refresh-policy change applies from the client's next refresh; the audit
    event carries the effective policy before and after.

    :raises ValidationError: when the result would be invalid (no redirect URI left,
        a grace period longer than the access lifetime, ...).
    """
    oauth_client = require_client(client_id)
    before = describe_policy(oauth_client.token_policy(current_app.config))
    try:
        changes = _apply_changes(
            oauth_client,
            name=name,
            add_redirect_uris=add_redirect_uris,
            remove_redirect_uris=remove_redirect_uris,
            scopes=scopes,
            access_token_lifetime=access_token_lifetime,
            refresh_grace_lifetime=refresh_grace_lifetime,
            clear_lifetimes=clear_lifetimes,
            disabled=disabled,
            policy=policy,
            default_access=default_access,
            default_grace=default_grace,
        )
    except ValidationError:
        # Half-applied changes must not reach the next commit of this session.
        db.session.rollback()
        raise
    after = describe_policy(oauth_client.token_policy(current_app.config))
    details: dict[str, Any] = {"changes": changes}
    if after != before:
        details["refresh_policy"] = {"before": before, "after": after}
    record_event("client.changed", actor="cli", client_id=client_id, **details)
    db.session.commit()
    return oauth_client


def _apply_changes(
    oauth_client: OAuth2Client,
    *,
    name: str | None,
    add_redirect_uris: list[str] | None,
    remove_redirect_uris: list[str] | None,
    scopes: list[str] | None,
    access_token_lifetime: int | None,
    refresh_grace_lifetime: int | None,
    clear_lifetimes: bool,
    disabled: bool | None,
    policy: PolicyChange | None = None,
    default_access: int,
    default_grace: int,
) -> list[str]:
    changes: list[str] = []
    if policy is not None:
        changes.extend(policy.apply_to(oauth_client))
    if name is not None:
        oauth_client.name = _check_name(name)
        changes.append("name")
    uris = list(oauth_client.redirect_uris)
    for uri in add_redirect_uris or []:
        checked = validate_redirect_uri(uri)
        if checked not in uris:
            uris.append(checked)
            changes.append("redirect_uri_added")
    for uri in remove_redirect_uris or []:
        if uri not in uris:
            raise ValidationError(f"redirect URI {uri!r} is not registered")
        uris.remove(uri)
        changes.append("redirect_uri_removed")
    if not uris:
        raise ValidationError("a client must keep at least one redirect URI")
    oauth_client.redirect_uris = uris
    if scopes is not None:
        scope_list = _check_scopes(scopes)
        if not scope_list:
            raise ValidationError("a client needs at least one scope")
        oauth_client.scopes = scope_list
        changes.append("scopes")
    if clear_lifetimes:
        oauth_client.access_token_lifetime = None
        oauth_client.refresh_grace_lifetime = None
        changes.append("lifetimes_cleared")
    if access_token_lifetime is not None:
        oauth_client.access_token_lifetime = access_token_lifetime
        changes.append("access_token_lifetime")
    if refresh_grace_lifetime is not None:
        oauth_client.refresh_grace_lifetime = refresh_grace_lifetime
        changes.append("refresh_grace_lifetime")
    check_lifetimes(
        access_token_lifetime=oauth_client.access_token_lifetime,
        refresh_grace_lifetime=oauth_client.refresh_grace_lifetime,
        default_access=default_access,
        default_grace=0,
    )
    _check_policy(oauth_client)
    if disabled is not None and disabled != oauth_client.disabled:
        oauth_client.disabled = disabled
        changes.append("disabled" if disabled else "enabled")
    if not changes:
        raise ValidationError("nothing to change; see --help for the options")
    return changes


def rotate_secret(
    owner: OAuth2Client | ResourceServer, *, overlap: timedelta, owner_id: str
) -> IssuedSecret:
    """Issue a new secret; the previous one lives until the overlap ends. Commit.

    At most two secrets are live: any older secret still in an overlap ends now.
    """
    if overlap < timedelta(0):
        raise ValidationError("overlap must not be negative")
    now = utcnow()
    live = owner.live_secrets(now)
    kwargs = _owner_kwargs(owner, owner_id)
    ended_early = 0
    current = live[0] if live else None
    for older in live[1:]:
        older.expires_at = now
        ended_early += 1
        record_event("secret.expired", actor="cli", reason="superseded", **kwargs)
    old_expires: datetime | None = None
    if current is not None:
        old_expires = now + overlap
        current.expires_at = old_expires
    raw = _new_secret(owner)
    record_event(
        "secret.rotated",
        actor="cli",
        old_secret_expires_at=format_utc(old_expires) if old_expires else None,
        **kwargs,
    )
    db.session.commit()
    return IssuedSecret(owner_id, raw, old_expires, ended_early)


def expire_old_secrets(owner: OAuth2Client | ResourceServer, *, owner_id: str) -> int:
    """End every overlap now, keeping only the newest secret; commit; return count."""
    now = utcnow()
    live = owner.live_secrets(now)
    for older in live[1:]:
        older.expires_at = now
        record_event(
            "secret.expired", actor="cli", reason="admin", **_owner_kwargs(owner, owner_id)
        )
    db.session.commit()
    return len(live) - 1 if live else 0


def _owner_kwargs(owner: OAuth2Client | ResourceServer, owner_id: str) -> dict[str, str]:
    if isinstance(owner, OAuth2Client):
        return {"client_id": owner_id}
    return {"resource_server": owner_id}


@dataclass(frozen=True, slots=True)
class SecretMatch:
    """A caller authenticated by one of its live secrets."""

    owner_kind: str  # "client" or "resource_server"
    owner_pk: int
    owner_id: str
    secret_id: int
    expires_at: datetime | None
    last_used_at: datetime | None


_secrets = CredentialSecret.__table__.c
_servers = ResourceServer.__table__.c
_clients = OAuth2Client.__table__.c
_MATCH_SECRET = (
    select(
        _secrets.id,
        _secrets.expires_at,
        _secrets.last_used_at,
        _servers.id.label("rs_pk"),
        _servers.server_id,
        _servers.disabled.label("rs_disabled"),
        _clients.id.label("client_pk"),
        _clients.client_id,
        _clients.disabled.label("client_disabled"),
        _clients.is_confidential,
        _clients.redirect_uris,
        _clients.scopes,
        _clients.access_token_lifetime,
        _clients.refresh_grace_lifetime,
        # The refresh policy rides along with the secret: no query of its own.
        _clients.refresh_profile,
        _clients.refresh_rotation,
        _clients.refresh_grace_until_used,
        _clients.refresh_reuse_revokes_family,
    )
    .select_from(CredentialSecret.__table__)
    .outerjoin(ResourceServer.__table__, _servers.id == _secrets.resource_server_id)
    .outerjoin(OAuth2Client.__table__, _clients.id == _secrets.oauth_client_id)
    .where(_secrets.secret_hash == bindparam("digest"))
)


@dataclass(frozen=True, slots=True)
class AuthenticatedClient(ClientRulesMixin):
    """A confidential client that just proved its secret, read without the ORM.

    The token endpoint authenticates a client on every request; building it from
    the authenticating query's row costs a fraction of loading the mapped object.
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
    matched: SecretMatch


if TYPE_CHECKING:
    # Both kinds of client the token services receive satisfy ClientRules: mypy
    # checks these two assignments (a missing or mistyped member fails the lint).
    _ROW_CLIENT: type[ClientRules] = OAuth2Client
    _AUTHENTICATED_CLIENT: type[ClientRules] = AuthenticatedClient


def authenticate_client(
    client_id: str, secret: str, *, generation: int | None = None
) -> AuthenticatedClient | None:
    """Return the enabled confidential client whose live secret this is, or None.

    ``generation``: as for match_secret (the token endpoint reads it with the token).
    """
    found = _match(client_id, secret, generation)
    if found is None:
        return None
    match, row = found
    if match.owner_kind != "client":
        return None
    return AuthenticatedClient(
        row.client_pk,
        row.client_id,
        list(row.redirect_uris or []),
        list(row.scopes or []),
        True,
        False,
        row.access_token_lifetime,
        row.refresh_grace_lifetime,
        row.refresh_profile,
        row.refresh_rotation,
        row.refresh_grace_until_used,
        row.refresh_reuse_revokes_family,
        match,
    )


def match_secret(
    owner_id: str, secret: str, *, generation: int | None = None
) -> SecretMatch | None:
    """Authenticate an enabled resource server or confidential client in one query.

    The row is found by the secret's digest (a unique index). Secrets are 256-bit
    random values, so the lookup's timing reveals nothing about them, unlike a
    byte-by-byte comparison of the secret itself; the owner id must then match too.
    ``generation``: the credential generation, when the caller read it just now
    together with something else (introspection reads it with the token).
    """
    found = _match(owner_id, secret, generation)
    return found[0] if found is not None else None


def _match(
    owner_id: str, secret: str, generation: int | None = None
) -> tuple[SecretMatch, Any] | None:
    if not owner_id or not secret or len(owner_id) > 64 or len(secret) > 512:
        return None
    cache = _credential_cache()
    row = cache.lookup(hash_token(secret), generation)
    if row is None:
        return None
    # Expiry and the owner's state are checked on every call, cached row or not.
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    last_used = cache.last_used_at(row.id, row.last_used_at)
    if row.rs_pk is not None:
        if row.rs_disabled or row.server_id != owner_id:
            return None
        return SecretMatch(
            "resource_server", row.rs_pk, row.server_id, row.id, row.expires_at, last_used
        ), row
    if row.client_disabled or not row.is_confidential or row.client_id != owner_id:
        return None
    return SecretMatch(
        "client", row.client_pk, row.client_id, row.id, row.expires_at, last_used
    ), row


_CACHE_KEY = "authserver.credential_cache"
_GENERATION = "SELECT generation FROM credential_changes WHERE id = 1"


class CredentialCache:
    """The rows of recently matched secrets, by digest, valid for one generation.

    Introspection and the token endpoint authenticate their caller on every call,
    with one query joining the secret to its owner. This keeps the row instead, and
    uses it only while ``credential_changes.generation`` still holds the value read
    just before the row was: database triggers bump it in the very transaction that
    changes a secret, client or resource server (migration 0007), so a rotation, an
    ended overlap, a disable or a delete is seen by every worker on its next call.
    Reading the generation is one indexed single-row read on the raw connection,
    a fraction of the lookup it replaces. Only found rows are kept (a wrong secret
    matches none), at most MAX_ENTRIES of them, each for ``ttl`` seconds at most.
    """

    MAX_ENTRIES = 1024

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._rows: dict[str, tuple[int, float, Any]] = {}
        # last_used_at written by this worker since the rows were read (the triggers
        # ignore that column, so a cached row keeps the value it was read with).
        self._used: dict[int, datetime] = {}
        self._lock = threading.Lock()

    def last_used_at(self, secret_id: int, read: datetime | None) -> datetime | None:
        """Return the later of a row's last_used_at and the last use noted here."""
        noted = self._used.get(secret_id)
        if noted is None or (read is not None and read >= noted):
            return read
        return noted

    def note_use(self, secret_id: int, when: datetime) -> None:
        """Remember that this worker wrote the secret's last_used_at."""
        with self._lock:
            if len(self._used) >= self.MAX_ENTRIES:
                self._used.clear()
            self._used[secret_id] = when

    def lookup(self, digest: str, generation: int | None = None) -> Any:
        """Return the secret's row joined to its owner (cached or read), or None.

        ``generation``: read by the caller just now (before any secret row is read
        below); otherwise it is read here.
        """
        connection = connection_for_reads()
        if self.ttl <= 0:
            return connection.execute(_MATCH_SECRET, {"digest": digest}).first()
        # The generation first: a change committed after this read bumps it again,
        # so a row read below is never kept under a generation newer than itself.
        if generation is None:
            generation = self._read_generation(connection)
        now = time.monotonic()
        cached = self._rows.get(digest)
        if (
            cached is not None
            and generation is not None
            and cached[0] == generation
            and now < cached[1]
        ):
            return cached[2]
        row = connection.execute(_MATCH_SECRET, {"digest": digest}).first()
        if row is not None and generation is not None:
            with self._lock:
                if len(self._rows) >= self.MAX_ENTRIES:
                    self._rows.clear()
                self._rows[digest] = (generation, now + self.ttl, row)
        return row

    @staticmethod
    def _read_generation(connection: Any) -> int | None:
        # The DBAPI connection itself (sqlite3 or psycopg): no statement compilation,
        # no result machinery, for a read that runs on every authenticated call.
        raw: Any = connection.connection.driver_connection
        try:
            found = raw.execute(_GENERATION).fetchone()
        except connection.dialect.loaded_dbapi.Error:
            # Through SQLAlchemy again, so that the failure is what every other query
            # raises (DBAPIError: a 503 for an outage) and a dead connection is dropped.
            found = connection.exec_driver_sql(_GENERATION).first()
        return found[0] if found is not None else None


def _credential_cache() -> CredentialCache:
    cache: CredentialCache | None = current_app.extensions.get(_CACHE_KEY)
    if cache is None:
        cache = CredentialCache(float(current_app.config["CREDENTIAL_CACHE_SECONDS"]))
        current_app.extensions[_CACHE_KEY] = cache
    return cache


def note_secret_use(match: SecretMatch) -> None:
    """Note when the matched secret was last used; audit use of a superseded one.

    Commits only when something changed: at most once a minute per secret, except
    that the first use of the old secret after a rotation is always noted.
    """
    now = utcnow()
    last_used = match.last_used_at
    due = last_used is None or now - last_used >= LAST_USED_RESOLUTION
    if not due and match.expires_at is None:
        return
    # The bookkeeping below is one unit of work; the caller may have read without a
    # transaction (database.read_without_transaction), so start a fresh one.
    db.session.commit()
    if match.expires_at is not None:
        # The old secret during an overlap: the admin wants to see when IFTTT switches.
        # The newest secret's creation is the rotation; a use from before it (even a
        # few seconds before) must not hide the first use after it.
        owner_column = (
            _secrets.oauth_client_id
            if match.owner_kind == "client"
            else _secrets.resource_server_id
        )
        rotated_at = db.session.scalar(
            select(func.max(_secrets.created_at)).where(owner_column == match.owner_pk)
        )
        first_since_rotation = last_used is None or (
            rotated_at is not None and last_used < rotated_at
        )
        if due or first_since_rotation:
            kwargs = (
                {"client_id": match.owner_id}
                if match.owner_kind == "client"
                else {"resource_server": match.owner_id}
            )
            record_event("secret.used_old", **kwargs)
            due = True
    if due:
        db.session.execute(
            update(CredentialSecret)
            .where(CredentialSecret.id == match.secret_id)
            .values(last_used_at=now)
        )
        db.session.commit()
        _credential_cache().note_use(match.secret_id, now)


# Resource servers ---------------------------------------------------------------


def register_resource_server(name: str) -> tuple[ResourceServer, str]:
    """Register a resource server (a shim) and commit; return it with its secret."""
    server = ResourceServer(server_id="rs_" + std_secrets.token_urlsafe(15), name=_check_name(name))
    db.session.add(server)
    raw = _new_secret(server)
    record_event("resource_server.created", actor="cli", resource_server=server.server_id)
    db.session.commit()
    return server, raw


def get_resource_server(server_id: str) -> ResourceServer | None:
    """Return the resource server with this id, if any."""
    if not server_id or len(server_id) > 64 or "\x00" in server_id:
        return None
    # Introspection is the hot path: load the secrets in the same query.
    return (
        db.session.scalars(
            select(ResourceServer)
            .options(joinedload(ResourceServer.secrets))
            .where(ResourceServer.server_id == server_id)
        )
        .unique()
        .first()
    )


def require_resource_server(server_id: str) -> ResourceServer:
    """Return the resource server with this id.

    :raises NotFoundError: when there is none.
    """
    server = get_resource_server(server_id)
    if server is None:
        raise NotFoundError(f"no resource server with id {server_id!r}")
    return server


def list_resource_servers() -> list[ResourceServer]:
    """Return every resource server, oldest first."""
    return list(db.session.scalars(select(ResourceServer).order_by(ResourceServer.id)))


def delete_resource_server(server_id: str) -> None:
    """Delete a resource server and its secrets; commit."""
    server = require_resource_server(server_id)
    record_event("resource_server.deleted", actor="cli", resource_server=server_id)
    db.session.delete(server)
    db.session.commit()
