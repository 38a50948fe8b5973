"""Append events to the audit trail and the security log."""

from __future__ import annotations

import logging
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from ..clock import utcnow
from ..database import db
from ..models import AuditEvent

log = logging.getLogger("authserver.audit")

# The event types the trail knows; `authserver audit --type` accepts these.
EVENT_TYPES = (
    "user.created",
    "user.changed",
    "user.deleted",
    "login.failed",
    "client.created",
    "client.changed",
    "client.deleted",
    "client.auth_failed",
    "secret.created",
    "secret.rotated",
    "secret.expired",
    "secret.used_old",
    "resource_server.created",
    "resource_server.deleted",
    "family.revoked",
    "token.issued",
    "test_token.issued",
    "test_token.refused",
    "test_tokens.allowed",
    "test_tokens.revoked",
)


# Detail keys that would name a credential; a caller passing one is a bug, caught
# before anything reaches the table or the log.
_CREDENTIAL_KEYS = frozenset(
    {
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "code",
        "password",
    }
)


def record_event(
    event_type: str,
    *,
    actor: str | None = None,
    client_id: str | None = None,
    username: str | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an audit row to the current unit of work and log it.

    The caller commits. Callers must never pass secrets, tokens, codes or passwords.

    :raises ValueError: for a detail named like a credential.
    """
    leaked = _CREDENTIAL_KEYS.intersection(details)
    if leaked:
        raise ValueError(f"audit details must not carry credentials: {sorted(leaked)}")
    # Failed logins and client authentications record what the caller typed:
    # PostgreSQL refuses NUL in text, so keep it out rather than lose the event.
    client_id = client_id.replace("\x00", "\ufffd") if client_id else client_id
    username = username.replace("\x00", "\ufffd") if username else username
    event = AuditEvent(
        event_type=event_type,
        actor=actor,
        client_id=client_id,
        username=username,
        details=details,
    )
    db.session.add(event)
    log.info(
        "audit %s client_id=%s username=%s %s",
        event_type,
        client_id,
        username,
        " ".join(f"{k}={v}" for k, v in sorted(details.items())),
        extra={
            "audit": {"event": event_type, "client_id": client_id, "username": username, **details}
        },
    )
    return event


def record_event_now(event_type: str, **kwargs: Any) -> None:
    """Record an event in its own transaction (for failures that roll back the rest)."""
    db.session.rollback()
    record_event(event_type, **kwargs)
    db.session.commit()


def record_failure_now(
    event_type: str,
    *,
    address: str,
    client_id: str | None = None,
    username: str | None = None,
) -> None:
    """Count a failed login or client authentication, one row per address, id and minute.

    A flood of failures must not grow the table without bound: the failure joins the
    row of the same address and claimed id in the current minute (only ``count``
    may be updated, migration 0008), or starts one. Commits in its own transaction.
    """
    client_id = client_id.replace("\x00", "\ufffd") if client_id else client_id
    username = username.replace("\x00", "\ufffd") if username else username
    now = utcnow()
    minute = now.replace(second=0, microsecond=0)
    db.session.rollback()
    # The newest matching row only: two workers may each have started one.
    newest = (
        select(func.max(AuditEvent.id))
        .where(
            AuditEvent.event_type == event_type,
            AuditEvent.address == address,
            AuditEvent.client_id.is_not_distinct_from(client_id),
            AuditEvent.username.is_not_distinct_from(username),
            AuditEvent.created_at >= minute,
            AuditEvent.created_at < minute + timedelta(minutes=1),
        )
        .scalar_subquery()
    )
    counted = db.session.execute(
        update(AuditEvent)
        .where(AuditEvent.id == newest)
        .values(count=AuditEvent.count + 1)
        .execution_options(synchronize_session=False)
    )
    if counted.rowcount == 0:  # type: ignore[attr-defined]
        event = record_event(event_type, client_id=client_id, username=username)
        event.address = address
        event.created_at = now
    db.session.commit()


def purge_events(*, before: datetime) -> int:
    """Delete audit events older than ``before`` and commit; return how many.

    Retention: the trail is append-only, but not kept forever.
    """
    deleted = db.session.execute(delete(AuditEvent).where(AuditEvent.created_at < before))
    db.session.commit()
    return int(deleted.rowcount)  # type: ignore[attr-defined]


def list_events(
    *,
    since: datetime | None = None,
    client_id: str | None = None,
    username: str | None = None,
    event_type: str | None = None,
    limit: int = 1000,
) -> tuple[list[AuditEvent], bool]:
    """Return the newest ``limit`` audit events, newest first, filtered as given.

    The flag tells whether older matching events were left out by the limit.
    """
    # record_event keeps NUL out of stored ids and names, and PostgreSQL refuses it.
    if "\x00" in (client_id or "") + (username or "") + (event_type or ""):
        return [], False
    stmt = select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    if since is not None:
        stmt = stmt.where(AuditEvent.created_at >= since)
    if client_id is not None:
        stmt = stmt.where(AuditEvent.client_id == client_id)
    if username is not None:
        stmt = stmt.where(AuditEvent.username == username)
    if event_type is not None:
        stmt = stmt.where(AuditEvent.event_type == event_type)
    # One more than asked for tells whether the limit cut the list.
    events = list(db.session.scalars(stmt.limit(limit + 1)))
    return events[:limit], len(events) > limit
