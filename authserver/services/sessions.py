"""Server-side browser sessions: opened at login, ended at logout.

The signed cookie alone cannot be taken back: a copy made before logout would stay
valid until it expires. So each login gets a row here, the cookie carries the row's
random id, and logout deletes the row. Other logins of the same user (their phone,
another browser) keep their own rows and stay logged in; a password change or a
disabled account still ends them all through ``User.session_epoch``.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy import select

from ..clock import utcnow
from ..database import db
from ..models import User
from ..models import UserSession
from ..security import hash_token
from ..security import new_token

# Older logins of one user are dropped beyond this many, so repeated logins cannot
# grow the table without bound (and it needs no purge job).
MAX_SESSIONS_PER_USER = 20


def open_session(user: User, *, lifetime: timedelta) -> str:
    """Record a new login of ``user`` and return its id (for the cookie); commit.

    Also deletes the user's expired logins and the oldest ones past the cap.
    """
    now = utcnow()
    keep = (
        select(UserSession.id)
        .where(UserSession.user_id == user.id, UserSession.expires_at > now)
        .order_by(UserSession.created_at.desc(), UserSession.id.desc())
        .limit(MAX_SESSIONS_PER_USER - 1)
    )
    kept = list(db.session.scalars(keep))
    db.session.execute(
        delete(UserSession)
        .where(UserSession.user_id == user.id, UserSession.id.not_in(kept))
        .execution_options(synchronize_session=False)
    )
    session_id = new_token()
    db.session.add(
        UserSession(
            session_hash=hash_token(session_id),
            user_id=user.id,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    db.session.commit()
    return session_id


def close_session(session_id: str | None) -> None:
    """End the login with this id, if it exists; commit."""
    if not session_id:
        return
    db.session.execute(
        delete(UserSession)
        .where(UserSession.session_hash == hash_token(session_id))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def get_session_user(user_id: str, session_id: str | None) -> User | None:
    """Return the user of a live login, or None.

    ``user_id`` is what Flask-Login keeps in the cookie (``User.get_id()``),
    ``session_id`` the login's id: both must still hold (one query).
    """
    if not session_id or not isinstance(session_id, str):
        return None
    public_id, _, epoch = user_id.partition(":")
    user = db.session.scalar(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(
            User.public_id == public_id,
            UserSession.session_hash == hash_token(session_id),
            UserSession.expires_at > utcnow(),
        )
    )
    if user is None or str(user.session_epoch) != epoch or user.disabled:
        return None
    return user
