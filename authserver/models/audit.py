"""The append-only audit trail (only a failure row's count may grow)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..clock import utcnow
from ..database import Model
from ..database import UTCDateTime


class AuditEvent(Model):
    """One security-relevant event; never carries a secret, token or password."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    event_type: Mapped[str] = mapped_column(String(60), index=True)
    actor: Mapped[str | None] = mapped_column(String(100))
    client_id: Mapped[str | None] = mapped_column(String(64), index=True)
    username: Mapped[str | None] = mapped_column(String(150), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Failed logins and client authentications: the caller's address, and how many
    # failures from it claiming this id fell in the row's minute (one row, not a flood).
    address: Mapped[str | None] = mapped_column(String(45))
    count: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
