"""The change counter behind the credential cache (services/clients.py)."""

from __future__ import annotations

from sqlalchemy import BigInteger
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..database import Model


class CredentialChanges(Model):
    """One row whose ``generation`` the database bumps on any credential change.

    Triggers (migration 0007) add one on every INSERT, DELETE and relevant UPDATE of
    credential_secrets, oauth2_clients and resource_servers, in the changing
    transaction itself, whoever makes it (a service, the CLI, plain SQL). A cached
    credential is used only while the generation it was read under is current.
    """

    __tablename__ = "credential_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
