"""A trigger-identity store in the shim's own database, through SQLAlchemy Core.

It uses the engine the shim's application already has (never the authserver's
database): ``SQLAlchemyStore(create_engine("postgresql+psycopg://..."))``.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import Column
from sqlalchemy import DateTime
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from .store import TriggerIdentity

__all__ = ["SQLAlchemyStore"]


class SQLAlchemyStore:
    """Trigger identities in one table of the shim's database (SQLite, PostgreSQL, ...).

    :param engine: the shim's SQLAlchemy engine.
    :param table_name: the table's name.
    :param metadata: the application's ``MetaData`` (so its migrations see the table).
    :param create_table: create the table if missing (off when migrations own it).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        table_name: str = "ifttt_trigger_identities",
        metadata: MetaData | None = None,
        create_table: bool = True,
    ) -> None:
        self.engine = engine
        self.table = Table(
            table_name,
            metadata if metadata is not None else MetaData(),
            # IFTTT's identities are 40 hex characters today; leave room.
            Column("trigger_identity", String(255), primary_key=True),
            Column("slug", String(255), nullable=False, index=True),
            Column("user_id", String(255), nullable=False, index=True),
            Column("fields", JSON, nullable=False),
            Column("last_polled_at", DateTime(timezone=True)),
        )
        if create_table:
            self.table.create(engine, checkfirst=True)

    def remember(self, identity: TriggerIdentity) -> None:
        """Insert or update an identity (the newest poll wins)."""
        values = {
            "slug": identity.slug,
            "user_id": identity.user_id,
            "fields": dict(identity.fields),
            "last_polled_at": identity.last_polled_at,
        }
        key = self.table.c.trigger_identity == identity.trigger_identity
        with self.engine.begin() as connection:
            if connection.execute(update(self.table).where(key).values(**values)).rowcount:
                return
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(self.table).values(trigger_identity=identity.trigger_identity, **values)
                )
        except IntegrityError:
            # A concurrent poll inserted it first; its values are as fresh as ours.
            with self.engine.begin() as connection:
                connection.execute(update(self.table).where(key).values(**values))

    def get(self, trigger_identity: str) -> TriggerIdentity | None:
        """Return the identity, if known."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(self.table).where(self.table.c.trigger_identity == trigger_identity)
            ).first()
        return None if row is None else _identity(row)

    def forget(self, trigger_identity: str) -> TriggerIdentity | None:
        """Remove an identity; return what was removed."""
        key = self.table.c.trigger_identity == trigger_identity
        with self.engine.begin() as connection:
            row = connection.execute(select(self.table).where(key)).first()
            if row is None:
                return None
            connection.execute(delete(self.table).where(key))
        return _identity(row)

    def find(self, *, user_id: str | None = None, slug: str | None = None) -> list[TriggerIdentity]:
        """Return the identities of a user and/or trigger."""
        query = select(self.table).order_by(self.table.c.trigger_identity)
        if user_id is not None:
            query = query.where(self.table.c.user_id == user_id)
        if slug is not None:
            query = query.where(self.table.c.slug == slug)
        with self.engine.connect() as connection:
            return [_identity(row) for row in connection.execute(query)]


def _identity(row: Row[Any]) -> TriggerIdentity:
    polled = row.last_polled_at
    if polled is not None and polled.tzinfo is None:
        # SQLite drops the offset; everything stored was UTC.
        polled = polled.replace(tzinfo=UTC)
    fields: dict[str, Any] = dict(row.fields or {})
    return TriggerIdentity(row.trigger_identity, row.slug, row.user_id, fields, polled)
