"""Authorization codes, token families, issuance, rotation, replay and revocation.

Invariants:
- raw codes and tokens exist only in responses; rows hold SHA-256 digests;
- single-use things (codes, rotated refresh tokens) are consumed by one conditional
  UPDATE whose rowcount decides the winner, so a race has exactly one;
- a family is revoked by one UPDATE of its row; every check goes through it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import NoReturn

from flask import current_app
from sqlalchemy import Table
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import cast
from sqlalchemy import delete
from sqlalchemy import exists
from sqlalchemy import insert
from sqlalchemy import literal
from sqlalchemy import null
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import true
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from .. import signals
from ..clock import epoch
from ..clock import utcnow
from ..database import db
from ..database import end_read_without_transaction
from ..errors import AuthServerError
from ..errors import ValidationError
from ..models import AccessToken
from ..models import AuthorizationCode
from ..models import CredentialChanges
from ..models import OAuth2Client
from ..models import RefreshToken
from ..models import TokenFamily
from ..models import User
from ..security import hash_token
from ..security import new_token
from ..security import open_successor
from ..security import seal_successor
from .audit import record_event
from .policies import TokenPolicy
from .policies import policy_for as policy_for  # re-exported for callers of tokens

log = logging.getLogger(__name__)
security_log = logging.getLogger("authserver.security")


def _table(model: Any) -> Table:
    """Return a model's Table (typed as such), for plain Core statements."""
    table: Table = model.__table__
    return table


# Column collections for the hot paths' Core statements.
_access = AccessToken.__table__.c
_families = TokenFamily.__table__.c
_users = User.__table__.c
_clients = OAuth2Client.__table__.c


class GrantError(AuthServerError):
    """The presented code or refresh token is invalid (OAuth ``invalid_grant``)."""

    #: The grant's owner (user public id) when the token was found, for the edge's log.
    user_public_id: str | None = None


class ScopeError(AuthServerError):
    """The requested scope exceeds what was granted (OAuth ``invalid_scope``)."""

    #: The grant's owner (user public id), for the edge's log.
    user_public_id: str | None = None


# Authorization codes ------------------------------------------------------------


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


def find_authorization_code(code: str, oauth_client: Any) -> RedeemableCode | None:
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


def _handle_code_replay(code_id: int, oauth_client: OAuth2Client) -> None:
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
    code: RedeemableCode, *, oauth_client: OAuth2Client, include_refresh_token: bool
) -> dict[str, Any]:
    """Consume a code and issue the first tokens of a new family; commit.

    :raises GrantError: when the code was consumed meanwhile (a replay or a race).
    """
    now = utcnow()
    family_id = _insert_family(code.user_id, oauth_client.id, code.scope, now)
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
    body = _issue(family, policy_for(oauth_client), now, include_refresh_token)
    db.session.commit()
    signals.token_issued.send()
    return body


@dataclass(frozen=True, slots=True)
class FamilyRef:
    """The two facts about a family that issuing tokens needs."""

    id: int
    scope: str


_INSERT_FAMILY = insert(_table(TokenFamily))


def _insert_family(user_id: int, oauth_client_id: int, scope: str, now: datetime) -> int:
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


def _issue(
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
    ``new_tokens`` (access, refresh) lets a caller that sealed them beforehand
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
    return _issue(family, policy_for(oauth_client), now or utcnow(), include_refresh_token)


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


# Refresh ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PresentedRefresh:
    """The presented refresh token's row and the family facts the rules need."""

    id: int
    family_id: int
    scope: str
    rotated_at: datetime | None


_refresh = RefreshToken.__table__.c
# Refresh runs for every connected user after every access-token expiry: its
# statements are built once, so a request pays neither for building them nor for
# their cache keys, and no ORM object is loaded on the way.
_PRESENTED_REFRESH = (
    select(
        _refresh.id,
        _refresh.family_id,
        _refresh.parent_id,
        _refresh.rotated_at,
        _refresh.revoked_at,
        _families.revoked_at.label("family_revoked_at"),
        _families.oauth_client_id,
        _families.scope,
        _users.public_id,
        _users.disabled.label("user_disabled"),
    )
    .select_from(RefreshToken.__table__)
    .join(TokenFamily.__table__, _families.id == _refresh.family_id)
    .join(User.__table__, _users.id == _families.user_id)
    .where(_refresh.token_hash == bindparam("digest"))
)
_IS_PRESENTED = _refresh.id == bindparam("row_id")
# A refresh token can be claimed (rotated) once, and never after its revocation.
_CLAIMABLE = and_(_IS_PRESENTED, _refresh.rotated_at.is_(None), _refresh.revoked_at.is_(None))
# One statement claims the presented token (if still unrotated) and erases its
# parent's sealed successor, which is the presented token itself: once a successor
# is used its parent can no longer replay, and a database copy plus the parent must
# not decrypt the chain forward. RETURNING tells which of the two rows it touched,
# so the claim costs no extra round trip.
_CLAIM_REFRESH = (
    update(_table(RefreshToken))
    .where(
        or_(
            _CLAIMABLE,
            and_(
                _refresh.id == bindparam("parent_row_id"),
                _refresh.successor_ciphertext.is_not(None),
            ),
        )
    )
    .values(
        rotated_at=case(
            (_IS_PRESENTED, bindparam("claimed_at", type_=_refresh.rotated_at.type)),
            else_=_refresh.rotated_at,
        ),
        grace_ends_at=case(
            (_IS_PRESENTED, bindparam("grace_until", type_=_refresh.grace_ends_at.type)),
            else_=_refresh.grace_ends_at,
        ),
        successor_ciphertext=case(
            # CAST: with no grace the value is NULL, which PostgreSQL would type as text.
            (
                _IS_PRESENTED,
                cast(
                    bindparam("sealed", type_=_refresh.successor_ciphertext.type),
                    _refresh.successor_ciphertext.type,
                ),
            ),
            else_=null(),
        ),
    )
    .returning(_refresh.id)
)
_INSERT_REFRESH = insert(_table(RefreshToken))
_INSERT_ACCESS = insert(_table(AccessToken))


def _typed(name: str, column: Any) -> Any:
    """Return a bind parameter of ``column``'s type (psycopg casts it: a NULL is typed)."""
    return bindparam(name, type_=column.type)


# PostgreSQL: the whole rotation is one statement, i.e. one round trip, where the
# claim and the two INSERTs took three (and BEGIN and COMMIT two more). The claim
# and its consequences are data-modifying CTEs: the successor is inserted only from
# the claimed row, so a claim that lost the race inserts nothing and returns no row;
# the parent's ciphertext is erased only when the claim succeeded; and the UNIQUE
# parent link still fails the whole statement. SQLite has no data-modifying CTEs.
_claimed = (
    update(_table(RefreshToken))
    .where(_CLAIMABLE)
    .values(
        rotated_at=_typed("claimed_at", _refresh.rotated_at),
        grace_ends_at=_typed("grace_until", _refresh.grace_ends_at),
        successor_ciphertext=_typed("sealed", _refresh.successor_ciphertext),
    )
    .returning(_refresh.id, _refresh.family_id)
    .cte("claimed")
)
_erased = (
    update(_table(RefreshToken))
    .where(
        _refresh.id == bindparam("parent_row_id"),
        _refresh.successor_ciphertext.is_not(None),
        select(_claimed.c.id).exists(),
    )
    .values(successor_ciphertext=null())
    .returning(_refresh.id)
    .cte("erased")
)
_successor = (
    insert(_table(RefreshToken))
    .from_select(
        ["token_hash", "family_id", "parent_id", "issued_at", "replay_count"],
        select(
            _typed("refresh_hash", _refresh.token_hash),
            _claimed.c.family_id,
            _claimed.c.id,
            _typed("issued_at_", _refresh.issued_at),
            literal(0),
        ),
    )
    .returning(_refresh.id, _refresh.family_id)
    .cte("successor")
)
_ROTATE_IN_ONE = (
    insert(_table(AccessToken))
    .from_select(
        ["token_hash", "family_id", "refresh_token_id", "scope", "issued_at", "expires_at"],
        select(
            _typed("access_hash", _access.token_hash),
            _successor.c.family_id,
            _successor.c.id,
            _typed("access_scope", _access.scope),
            _typed("issued_at_", _access.issued_at),
            _typed("access_expires_at", _access.expires_at),
        ),
    )
    .add_cte(_erased)
    .returning(_access.id)
)


@dataclass(frozen=True, slots=True)
class _ScopeRequest:
    """The scope a refresh may issue and whether the request asked for more."""

    scope: str
    exceeded: bool


def _refresh_scope(
    family_scope: str, oauth_client: OAuth2Client, requested: str | None
) -> _ScopeRequest:
    """Apply RFC 6749 §6 and the client's current scopes to a refresh request.

    The access token gets the requested scope when it is within the grant, else the
    whole grant; either way only scopes the client still holds (an admin may have
    removed some since the grant).
    """
    allowed = [s for s in family_scope.split() if s in oauth_client.scopes]
    if requested:
        wanted = set(requested.split())
        issued = [s for s in allowed if s in wanted]
        return _ScopeRequest(" ".join(issued), not wanted <= set(allowed))
    return _ScopeRequest(" ".join(allowed), not allowed)


@dataclass(frozen=True, slots=True)
class Refreshed:
    """A refresh's token response, and the grant's owner for the edge's log."""

    body: dict[str, Any]
    user_public_id: str


#: ``refresh(presented_row=...)`` default: the row was not read beforehand.
NOT_READ: Any = object()


def refresh(
    presented: str,
    *,
    oauth_client: OAuth2Client,
    requested_scope: str | None = None,
    presented_row: Any = NOT_READ,
) -> Refreshed:
    """Exchange a refresh token, with rotation, grace replay and reuse detection.

    Commits. See README "Refresh token semantics" for the table of outcomes.
    Validity and reuse are decided before scope, so a stale token is reuse whatever
    scope it asks for, and a scope error is only ever told to a holder of a live token.
    ``presented_row``: the token's row as read_presented_refresh returned it.
    Once the token is found, its errors carry the grant's owner (``user_public_id``).

    :raises GrantError: for an unknown, foreign, revoked or reused token.
    :raises ScopeError: when more scope is asked than the family (still) holds.
    """
    now = utcnow()
    policy = policy_for(oauth_client)
    found = presented_row
    if found is NOT_READ:
        found = (
            db.session.connection()
            .execute(_PRESENTED_REFRESH, {"digest": hash_token(presented)})
            .first()
        )
    if found is None or found.oauth_client_id != oauth_client.id:
        # Another client's token is not this client's to revoke: just refuse it.
        raise GrantError("The refresh token is invalid.")
    try:
        body = _exchange(found, presented, oauth_client, policy, requested_scope, now)
    except (GrantError, ScopeError) as error:
        error.user_public_id = found.public_id
        raise
    return Refreshed(body, found.public_id)


def _exchange(
    found: Any,
    presented: str,
    oauth_client: OAuth2Client,
    policy: TokenPolicy,
    requested_scope: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Apply the refresh rules to the presented token's row (see refresh)."""
    row = PresentedRefresh(found.id, found.family_id, found.scope, found.rotated_at)
    if found.family_revoked_at is not None or found.revoked_at is not None:
        _reuse_detected(row, oauth_client, policy, why="revoked token presented")
    if found.user_disabled:
        raise GrantError("The user account is disabled.")
    scope = _refresh_scope(row.scope, oauth_client, requested_scope)
    family = FamilyRef(row.family_id, row.scope)

    if row.rotated_at is None:
        if scope.exceeded:
            raise ScopeError("The requested scope exceeds the grant.")
        if not policy.rotation:
            body = _issue(
                family,
                policy,
                now,
                True,
                reuse_refresh=(row.id, presented),
                access_scope=scope.scope,
            )
            db.session.commit()
            signals.token_refreshed.send()
            return body
        body_or_none = _rotate(row, found.parent_id, presented, family, policy, scope, now)
        if body_or_none is not None:
            signals.token_refreshed.send()
            return body_or_none
    return _replay(row, presented, oauth_client, policy, scope)


def _rotate(
    row: PresentedRefresh,
    parent_id: int | None,
    presented: str,
    family: FamilyRef,
    policy: TokenPolicy,
    scope: _ScopeRequest,
    now: datetime,
) -> dict[str, Any] | None:
    """Claim the presented token and issue its successor; commit; None if it lost."""
    # The successor pair is chosen and sealed first, so that one conditional UPDATE
    # both claims the token and stores the sealed answer for grace-period replays.
    access_raw, refresh_raw = new_token(), new_token()
    expires_at = now + policy.access_lifetime if policy.access_lifetime else None
    sealed = None
    if policy.grace is None or policy.grace > timedelta(0):
        sealed = seal_successor(
            presented,
            {
                "access_token": access_raw,
                "refresh_token": refresh_raw,
                "expires_at": epoch(expires_at) if expires_at is not None else None,
                "scope": scope.scope,
            },
        )
    claim = {
        "row_id": row.id,
        "parent_row_id": parent_id,
        "claimed_at": now,
        # NULL: the window ends only when the successor is first used (google).
        "grace_until": None if policy.grace is None else now + policy.grace,
        "sealed": sealed,
    }
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        try:
            issued = connection.execute(
                _ROTATE_IN_ONE,
                {
                    **claim,
                    "refresh_hash": hash_token(refresh_raw),
                    "access_hash": hash_token(access_raw),
                    "access_scope": scope.scope,
                    "issued_at_": now,
                    "access_expires_at": expires_at,
                },
            ).first()
        except IntegrityError:
            # The UNIQUE parent link caught a second successor: take the replay path.
            db.session.rollback()
            return None
        if issued is None:
            db.session.rollback()
            return None
        db.session.commit()
        return token_response(access_raw, expires_at, refresh_raw, scope.scope, now)
    claimed = connection.execute(_CLAIM_REFRESH, claim)
    if row.id in claimed.scalars().all():
        # The UNIQUE parent link is checked when the successor's INSERT runs, not only
        # at commit, so the whole unit of work sits inside the try.
        try:
            body = _issue(
                family,
                policy,
                now,
                True,
                parent_id=row.id,
                new_tokens=(access_raw, refresh_raw),
                access_scope=scope.scope,
            )
            db.session.commit()
        except IntegrityError:
            # The UNIQUE parent link caught a second successor: take the replay path.
            db.session.rollback()
            return None
        return body
    db.session.rollback()
    return None


_child = aliased(RefreshToken)
_SUCCESSOR_OF = (
    select(RefreshToken.successor_ciphertext, _child.id)
    .join(_child, _child.parent_id == RefreshToken.id)
    .where(RefreshToken.id == bindparam("row_id"))
)


def _replay(
    row: PresentedRefresh,
    presented: str,
    oauth_client: OAuth2Client,
    policy: TokenPolicy,
    scope: _ScopeRequest,
) -> dict[str, Any]:
    """Answer a rotated token within its window with the same successor.

    The successor refresh token is always the same one (the family never forks).
    The access token is the sealed one, unless the policy wants a new one on every
    replay (google), or it was revoked (RFC 7009), expired, or the request needs
    another scope: then a fresh one is bound to the successor.
    """
    # The count, the checks after it and a fresh access token are one unit of work.
    end_read_without_transaction()
    now = utcnow()
    successor_unused = exists().where(
        _child.parent_id == RefreshToken.id,
        _child.rotated_at.is_(None),
        _child.revoked_at.is_(None),
    )
    family_live = exists().where(TokenFamily.id == RefreshToken.family_id, TokenFamily.live())
    replayable = (
        RefreshToken.id == row.id,
        RefreshToken.rotated_at.is_not(None),
        RefreshToken.revoked_at.is_(None),
        or_(RefreshToken.grace_ends_at.is_(None), RefreshToken.grace_ends_at > now),
        RefreshToken.successor_ciphertext.is_not(None),
        successor_unused,
        family_live,
    )
    cap = (RefreshToken.replay_count < policy.max_replays,) if policy.max_replays else ()
    # One conditional UPDATE both checks every replay rule and counts the replay, so
    # concurrent replays cannot exceed a cap.
    counted = db.session.execute(
        update(RefreshToken)
        .where(*replayable, *cap)
        .values(replay_count=RefreshToken.replay_count + 1)
        .execution_options(synchronize_session=False)
    )
    if counted.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        if cap and db.session.scalar(select(exists().where(*replayable))):
            # Past the cap, but a retry within the window is not an attack: refuse
            # this one and leave the grant alone (issue 13: a retry storm must never
            # disconnect the user).
            log.info("refresh replay over the cap family=%s", row.family_id)
            raise GrantError("The refresh token is invalid or was already used.")
        _reuse_detected(row, oauth_client, policy, why="rotated token reused")
    if scope.exceeded:
        db.session.rollback()
        raise ScopeError("The requested scope exceeds the grant.")
    successor = db.session.execute(_SUCCESSOR_OF, {"row_id": row.id}).first()
    # The successor's first use may have erased the ciphertext since the count: that
    # race ends the window, and the answer is a plain refusal.
    payload = open_successor(presented, successor[0]) if successor and successor[0] else None
    if successor is None or payload is None:
        db.session.rollback()
        raise GrantError("The refresh token is invalid or was already used.")
    successor_id = successor[1]
    access_raw = payload["access_token"]
    expires = payload.get("expires_at")
    expires_at = datetime.fromtimestamp(expires, UTC) if expires else None
    sealed_scope = payload.get("scope", row.scope)
    access_revoked = db.session.scalar(
        select(AccessToken.revoked_at).where(AccessToken.token_hash == hash_token(access_raw))
    )
    if (
        policy.fresh_access_on_replay
        or access_revoked is not None
        or (expires_at is not None and now >= expires_at)
        or sealed_scope != scope.scope
    ):
        body = _issue(
            FamilyRef(row.family_id, row.scope),
            policy,
            now,
            True,
            reuse_refresh=(successor_id, payload["refresh_token"]),
            access_scope=scope.scope,
        )
    else:
        body = token_response(access_raw, expires_at, payload["refresh_token"], sealed_scope, now)
    db.session.commit()
    log.info("refresh replay within grace family=%s", row.family_id)
    signals.refresh_replayed.send()
    return body


def _reuse_detected(
    row: PresentedRefresh, oauth_client: OAuth2Client, policy: TokenPolicy, *, why: str
) -> NoReturn:
    """Refuse a used refresh token; revoke its family (RFC 9700 §4.14.2); commit."""
    end_read_without_transaction()
    security_log.warning(
        "refresh token reuse detected client_id=%s family=%s reason=%s",
        oauth_client.client_id,
        row.family_id,
        why,
    )
    signals.reuse_detected.send()
    if policy.reuse_revokes_family:
        revoke_families([row.family_id], "reuse_detected")
    db.session.commit()
    raise GrantError("The refresh token is invalid or was already used.")


# Revocation ---------------------------------------------------------------------


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


def revoke_token(token: AccessToken | RefreshToken, *, oauth_client: OAuth2Client) -> None:
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
    row = (
        db.session.connection()
        .execute(
            _ACTIVE_ACCESS_TOKEN,
            {"digest": hash_token(raw), "now": utcnow()},
        )
        .first()
    )
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
        db.session.connection()
        .execute(_GENERATION_AND_ACTIVE_TOKEN, {"digest": hash_token(raw), "now": utcnow()})
        .first()
    )
    if row is None:
        return None, None
    return row.generation, None if row.id is None else _active_from_row(row)


_presented = _PRESENTED_REFRESH.subquery("presented")
_GENERATION_AND_PRESENTED_REFRESH = (
    select(_changes.generation, _presented)
    .select_from(CredentialChanges.__table__.outerjoin(_presented, true()))
    .where(_changes.id == 1)
)


def read_presented_refresh(presented: str) -> tuple[int | None, Any]:
    """Return the credential generation and the presented refresh token's row, in one query.

    The token endpoint reads both before it authenticates the client, whose cached
    secret is checked against that generation (services/clients.py): on PostgreSQL
    a refresh is then two round trips, this read and the rotation. The row (None
    for an unknown token) is for ``refresh(presented_row=...)``.
    """
    row = (
        db.session.connection()
        .execute(_GENERATION_AND_PRESENTED_REFRESH, {"digest": hash_token(presented)})
        .first()
    )
    if row is None:
        return None, None
    return row.generation, None if row.id is None else row


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


# CLI issuance, listing and purge ---------------------------------------------------


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
    body = _issue(family, policy_for(oauth_client), now, True)
    record_event(
        "token.issued",
        actor="cli",
        client_id=oauth_client.client_id,
        username=user.username,
        family=family.id,
    )
    db.session.commit()
    return body


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


@dataclass(frozen=True)
class PurgeResult:
    """What one purge removed."""

    ciphertexts: int
    codes: int
    families: int


PURGE_BATCH = 500


def purge(
    *, batch_size: int = PURGE_BATCH, retention: timedelta = timedelta(days=1)
) -> PurgeResult:
    """Erase expired successor ciphertexts, dead codes and dead families, in batches.

    Each batch commits on its own, so the purge never holds long locks.
    A family is dead when revoked longer than ``retention`` ago, or when it has no
    usable refresh token and every access token expired longer than ``retention`` ago.
    """
    now = utcnow()
    ciphertexts = _batched(
        select(RefreshToken.id).where(
            RefreshToken.successor_ciphertext.is_not(None), RefreshToken.grace_ends_at <= now
        ),
        lambda ids: (
            update(RefreshToken).where(RefreshToken.id.in_(ids)).values(successor_ciphertext=None)
        ),
        batch_size,
    )
    codes = _batched(
        select(AuthorizationCode.id).where(
            or_(
                AuthorizationCode.expires_at <= now - retention,
                and_(
                    AuthorizationCode.used_at.is_not(None),
                    AuthorizationCode.used_at <= now - retention,
                ),
            )
        ),
        lambda ids: delete(AuthorizationCode).where(AuthorizationCode.id.in_(ids)),
        batch_size,
    )
    live_refresh = exists().where(RefreshToken.family_id == TokenFamily.id, RefreshToken.unspent())
    live_access = exists().where(
        AccessToken.family_id == TokenFamily.id,
        or_(AccessToken.expires_at.is_(None), AccessToken.expires_at > now - retention),
    )
    families = _batched(
        select(TokenFamily.id).where(
            or_(
                TokenFamily.revoked_at <= now - retention,
                and_(TokenFamily.live(), ~live_refresh, ~live_access),
            )
        ),
        lambda ids: delete(TokenFamily).where(TokenFamily.id.in_(ids)),
        batch_size,
    )
    return PurgeResult(ciphertexts, codes, families)


def _batched(select_ids: Any, make_statement: Any, batch_size: int) -> int:
    total = 0
    while True:
        ids = list(db.session.scalars(select_ids.limit(batch_size)))
        if not ids:
            return total
        db.session.execute(make_statement(ids).execution_options(synchronize_session=False))
        db.session.commit()
        total += len(ids)
        if len(ids) < batch_size:
            return total
