"""Database handle, typed model base, naming convention and the UTC datetime type."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime
from sqlalchemy import Dialect
from sqlalchemy import MetaData
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base carrying the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)

if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model


class UTCDateTime(TypeDecorator[datetime]):
    """Store naive UTC, return aware UTC, so SQLite and PostgreSQL agree."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """Convert an aware datetime to naive UTC for storage."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not accepted; use clock.utcnow()")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Attach UTC to the stored naive value."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return value.replace(tzinfo=UTC)


# app.extensions flag: the database gains from autocommit reads (PostgreSQL).
AUTOCOMMIT_READS_KEY = "authserver.autocommit_reads"


def configure_sqlite(engine: Engine, *, busy_timeout_seconds: int) -> None:
    """Set WAL, the busy timeout and foreign keys on each new SQLite connection.

    WAL lets readers proceed while one writer commits. The busy timeout makes a
    writer wait for another's lock (other gunicorn workers, an admin command)
    instead of failing at once, but no longer than the database timeout: past it
    the request answers 503, as on PostgreSQL (writes take milliseconds, so a
    longer wait means something holds the lock).
    """
    # Imported here: a PostgreSQL worker would keep the sqlite3 module and its
    # library resident (about 1 MiB) for nothing.
    import sqlite3

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, connection_record: Any) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_seconds * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def statements_are_round_trips() -> bool:
    """Tell whether each statement costs a network round trip (PostgreSQL).

    Then two reads are worth merging into one statement even when the merged one
    costs more CPU; SQLite runs in process, where only the CPU counts.
    """
    return bool(current_app.extensions.get(AUTOCOMMIT_READS_KEY))


def read_without_transaction() -> None:
    """On PostgreSQL, run the rest of this request's queries outside a transaction.

    For read-only hot paths (introspection, user info): it saves the BEGIN and the
    ROLLBACK-on-return round trips of every request (measured: 1.5 ms -> 0.8 ms per
    introspection in process). SQLite gains nothing (a read takes no lock until it
    runs) and pays for switching its isolation level, so it keeps the default.
    It must come before the request's first query; a request that then needs to
    write commits first (which hands this connection back) to get a transaction.
    """
    if not current_app.extensions.get(AUTOCOMMIT_READS_KEY):
        return
    session = db.session()  # the request's own Session behind the scoped proxy
    # With a transaction already open (an earlier query, or a test's app context
    # spanning requests), the reads simply join it.
    if not session.in_transaction():
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


# The pooled connection an enclosing read_connection() lent, for the reads within it.
_lent: ContextVar[Connection | None] = ContextVar("authserver_lent_connection", default=None)


@contextmanager
def read_connection() -> Iterator[Connection]:
    """Lend a connection for reads: one already lent, the session's, else a pooled one.

    For the read-only hot paths (user info, introspection). When the request's ORM
    session already holds a connection, the reads join it (and see what the session
    wrote). Otherwise the session is left unmade: its set-up, connection bookkeeping
    and teardown cost more instructions than the query (docs/performance.md), and a
    pooled connection serves the reads, on PostgreSQL in autocommit, without BEGIN
    and ROLLBACK round trips. Nested, it lends the same connection again, so an edge
    can open it once around several services' reads (``connection_for_reads``).
    """
    lent = _lent.get()
    if lent is not None:
        yield lent
        return
    registry = db.session.registry
    if registry.has():
        session = registry()
        if session.in_transaction():
            yield session.connection()
            return
    connection = db.engine.connect()
    token = _lent.set(connection)
    try:
        if current_app.extensions.get(AUTOCOMMIT_READS_KEY):
            connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection
    finally:
        _lent.reset(token)
        connection.close()


def connection_for_reads() -> Connection:
    """Return the connection an enclosing read_connection() lent, else the session's."""
    lent = _lent.get()
    return lent if lent is not None else db.session.connection()


def end_read_without_transaction() -> None:
    """Let the statements that follow form one transaction, after autocommit reads.

    For a path that began reading without a transaction and then has to write
    more than one statement atomically: committing hands the autocommit connection
    back, and the next statement begins a transaction on a fresh one. Without
    autocommit reads (SQLite, or reads that joined a transaction) it does nothing.
    """
    session = db.session()
    if (
        session.in_transaction()
        and session.connection().get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    ):
        session.commit()


_CHECKED_IN_AT = "authserver.checked_in_at"


def ping_after_idle(engine: Engine, idle_seconds: float) -> None:
    """Test pooled connections that sat idle, before handing them out.

    A pooled connection may have died with a server restart or failover. SQLAlchemy's
    pool_pre_ping tests every checkout: one round trip on every request, 3-16% of
    PostgreSQL throughput (make bench). Under load a connection goes back out within
    milliseconds, and a failover then fails the requests in flight anyway (after which
    SQLAlchemy replaces the whole pool), so only connections idle for a while are
    tested. A dead one raises DisconnectionError, on which the pool connects anew
    (SQLAlchemy's documented custom pessimistic ping).
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if engine.dialect.is_disconnect(error, dbapi_connection, None):
                raise DisconnectionError() from error
            raise
