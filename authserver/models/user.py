"""End users who log in and connect apps."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Boolean
from sqlalchemy import ColumnElement
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..clock import utcnow
from ..database import Model
from ..database import UTCDateTime


def new_public_id() -> str:
    """Return an opaque, permanent identifier (never derived from name or email)."""
    return secrets.token_hex(16)


class User(Model):
    """A resource owner; ``public_id`` is what IFTTT and introspection's ``sub`` see."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True, default=new_public_id)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped when the password changes or the user is disabled: old sessions die.
    session_epoch: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @classmethod
    def enabled(cls) -> ColumnElement[bool]:
        """Return the SQL condition of an enabled account (its tokens work)."""
        return cls.__table__.c.disabled.is_(False)

    # Flask-Login protocol.
    @property
    def is_authenticated(self) -> bool:
        """Tell Flask-Login this object is a logged-in user."""
        return True

    @property
    def is_active(self) -> bool:
        """Tell Flask-Login whether this user may keep a session."""
        return not self.disabled

    @property
    def is_anonymous(self) -> bool:
        """Tell Flask-Login this is not the anonymous user."""
        return False

    def get_id(self) -> str:
        """Return the session identifier; it changes when the session epoch moves."""
        return f"{self.public_id}:{self.session_epoch}"
