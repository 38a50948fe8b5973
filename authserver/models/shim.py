"""Which resource server may mint test tokens for IFTTT's endpoint tests, as whom."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..clock import utcnow
from ..database import Model
from ..database import UTCDateTime


class ShimTestPermission(Model):
    """An admin's permission for one resource server to mint test tokens.

    Tokens go to ``user_id`` through ``oauth_client_id``; every call reuses the
    family in ``family_id`` while it is live, so daily test runs leave one grant.
    """

    __tablename__ = "shim_test_permissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_server_id: Mapped[int] = mapped_column(
        ForeignKey("resource_servers.id", ondelete="CASCADE"), unique=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    oauth_client_id: Mapped[int] = mapped_column(
        ForeignKey("oauth2_clients.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[int | None] = mapped_column(
        ForeignKey("token_families.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
