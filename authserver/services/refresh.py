"""Refresh: rotation, grace-period replay and reuse detection.

A rotated refresh token is consumed by one conditional UPDATE (on PostgreSQL, one
statement that also inserts its successor), so a race has exactly one winner; the
losers take the replay path, and a token used outside its window revokes its family
(RFC 9700 §4.14.2). See README "Refresh token semantics" for the outcomes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import NoReturn

from flask import current_app
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import cast
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
from ..clock import utcnow
from ..database import db
from ..database import end_read_without_transaction
from ..errors import GrantError
from ..errors import ScopeError
from ..models import AccessToken
from ..models import CredentialChanges
from ..models import RefreshToken
from ..models import TokenFamily
from ..models import TokenPolicy
from ..models import User
from ..security import hash_token
from ..security import new_successor_seed
from ..security import new_token
from ..security import recall_successor_pair
from ..security import successor_pair
from .interfaces import ClientRules
from .revocation import revoke_families
from .statements import table
from .statements import typed
from .tokens import FamilyRef
from .tokens import issue
from .tokens import token_response

log = logging.getLogger(__name__)
security_log = logging.getLogger("authserver.security")

# Column collections for the hot paths' Core statements.
_access = AccessToken.__table__.c
_families = TokenFamily.__table__.c
_users = User.__table__.c
_changes = CredentialChanges.__table__.c
_refresh = RefreshToken.__table__.c


@dataclass(frozen=True, slots=True)
class PresentedRefresh:
    """The presented refresh token's row and the family facts the rules need."""

    id: int
    family_id: int
    scope: str
    rotated_at: datetime | None


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
# parent's successor seed (the presented token is that successor): once a successor
# is used its parent can no longer replay, and a database copy plus the parent must
# not derive the chain forward. RETURNING tells which of the two rows it touched,
# so the claim costs no extra round trip.
_CLAIM_REFRESH = (
    update(table(RefreshToken))
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
                    bindparam("seed", type_=_refresh.successor_ciphertext.type),
                    _refresh.successor_ciphertext.type,
                ),
            ),
            else_=null(),
        ),
    )
    .returning(_refresh.id)
)


# PostgreSQL: the whole rotation is one statement, i.e. one round trip, where the
# claim and the two INSERTs took three (and BEGIN and COMMIT two more). The claim
# and its consequences are data-modifying CTEs: the successor is inserted only from
# the claimed row, so a claim that lost the race inserts nothing and returns no row;
# the parent's successor seed is erased only when the claim succeeded; and the UNIQUE
# parent link still fails the whole statement. SQLite has no data-modifying CTEs.
_claimed = (
    update(table(RefreshToken))
    .where(_CLAIMABLE)
    .values(
        rotated_at=typed("claimed_at", _refresh.rotated_at),
        grace_ends_at=typed("grace_until", _refresh.grace_ends_at),
        successor_ciphertext=typed("seed", _refresh.successor_ciphertext),
    )
    .returning(_refresh.id, _refresh.family_id)
    .cte("claimed")
)
_erased = (
    update(table(RefreshToken))
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
    insert(table(RefreshToken))
    .from_select(
        ["token_hash", "family_id", "parent_id", "issued_at", "replay_count"],
        select(
            typed("refresh_hash", _refresh.token_hash),
            _claimed.c.family_id,
            _claimed.c.id,
            typed("issued_at_", _refresh.issued_at),
            literal(0),
        ),
    )
    .returning(_refresh.id, _refresh.family_id)
    .cte("successor")
)
_ROTATE_IN_ONE = (
    insert(table(AccessToken))
    .from_select(
        ["token_hash", "family_id", "refresh_token_id", "scope", "issued_at", "expires_at"],
        select(
            typed("access_hash", _access.token_hash),
            _successor.c.family_id,
            _successor.c.id,
            typed("access_scope", _access.scope),
            typed("issued_at_", _access.issued_at),
            typed("access_expires_at", _access.expires_at),
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
    family_scope: str, oauth_client: ClientRules, requested: str | None
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
    oauth_client: ClientRules,
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
    policy = oauth_client.token_policy(current_app.config)
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
    oauth_client: ClientRules,
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
            body = issue(
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
    # The successor pair is chosen first, so that one conditional UPDATE both claims
    # the token and stores the seed that answers grace-period replays with the pair.
    expires_at = now + policy.access_lifetime if policy.access_lifetime else None
    seed = None
    if policy.grace is None or policy.grace > timedelta(0):
        seed = new_successor_seed()
        access_raw, refresh_raw = successor_pair(presented, seed)
    else:
        access_raw, refresh_raw = new_token(), new_token()
    claim = {
        "row_id": row.id,
        "parent_row_id": parent_id,
        "claimed_at": now,
        # NULL: the window ends only when the successor is first used (google).
        "grace_until": None if policy.grace is None else now + policy.grace,
        "seed": seed,
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
            body = issue(
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
    oauth_client: ClientRules,
    policy: TokenPolicy,
    scope: _ScopeRequest,
) -> dict[str, Any]:
    """Answer a rotated token within its window with the same successor.

    The successor refresh token is always the same one (the family never forks).
    The access token is the one the rotation issued, unless the policy wants a new one on every
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
    # The successor's first use may have erased the seed since the count: that race
    # ends the window, and the answer is a plain refusal.
    pair = recall_successor_pair(presented, successor[0]) if successor and successor[0] else None
    if successor is None or pair is None:
        db.session.rollback()
        raise GrantError("The refresh token is invalid or was already used.")
    successor_id = successor[1]
    access_raw, refresh_raw = pair
    access = db.session.execute(
        select(AccessToken.revoked_at, AccessToken.expires_at, AccessToken.scope).where(
            AccessToken.token_hash == hash_token(access_raw)
        )
    ).first()
    if (
        policy.fresh_access_on_replay
        or access is None  # purged, or deleted with its family's other rows
        or access.revoked_at is not None
        or (access.expires_at is not None and now >= access.expires_at)
        or access.scope != scope.scope
    ):
        body = issue(
            FamilyRef(row.family_id, row.scope),
            policy,
            now,
            True,
            reuse_refresh=(successor_id, refresh_raw),
            access_scope=scope.scope,
        )
    else:
        body = token_response(access_raw, access.expires_at, refresh_raw, access.scope, now)
    db.session.commit()
    log.info("refresh replay within grace family=%s", row.family_id)
    signals.refresh_replayed.send()
    return body


def _reuse_detected(
    row: PresentedRefresh, oauth_client: ClientRules, policy: TokenPolicy, *, why: str
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
