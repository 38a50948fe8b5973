"""PostgreSQL connections that stop waiting for a database that does not answer.

A frozen server (SIGSTOPped, a hung host, a network partition) answers nothing,
yet its kernel, or a middlebox, keeps the TCP connection up: statement_timeout is
enforced by the server, so it never fires; connect_timeout covers only new
connections; TCP keepalives and tcp_user_timeout stay silent while the peer still
ACKs. Only the client can end the wait: every wait of a connection for the server
(query, commit, ping) ends after the database timeout, and the connection is then
closed so the pool never hands out a half-read socket (SQLAlchemy sees it closed,
counts a disconnect and replaces the pool's connections).
"""

from __future__ import annotations

from typing import Any
from typing import ClassVar
from typing import TypeVar

import psycopg
from flask import g
from flask import has_app_context
from psycopg import errors
from psycopg.abc import PQGen
from sqlalchemy import event
from sqlalchemy.engine import Engine

RV = TypeVar("RV")

# psycopg's own polling interval (Ctrl-C checks); its default.
_WAIT_INTERVAL = 0.1
_GAVE_UP_KEY = "authserver_database_gave_up"


class DatabaseTimeoutError(psycopg.OperationalError):
    """The database did not answer in time (SQLAlchemy wraps it as OperationalError)."""


class DeadlineConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for the server has a time limit."""

    #: Seconds one wait may take: AUTHSERVER_DB_TIMEOUT_SECONDS (set per engine).
    answer_timeout: ClassVar[float] = 5.0

    def wait(
        self, gen: PQGen[RV], interval: float = _WAIT_INTERVAL, timeout: float | None = None
    ) -> RV:
        """Consume ``gen`` as psycopg does, giving up after ``answer_timeout`` seconds.

        :raises DatabaseTimeoutError: after closing this connection.
        """
        limit = self.answer_timeout
        if timeout is not None and timeout < limit:
            # The caller's own, shorter timeout (notifies()): its error is its own.
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, limit)
        except errors._WaitTimeout:
            # The protocol state is unknown (a reply may be half read): the
            # connection cannot be reused, so it ends here.
            self.close()
            _note_gave_up()
            raise DatabaseTimeoutError(
                f"the database did not answer within {limit:g} seconds"
            ) from None


def _note_gave_up() -> None:
    # Request-scoped (flask.g): one wait's worth of timeout per request. Connecting
    # anew right after would wait as long again for the same frozen server.
    if has_app_context():
        setattr(g, _GAVE_UP_KEY, True)


def _gave_up() -> bool:
    return has_app_context() and bool(g.get(_GAVE_UP_KEY))


def use_answer_deadlines(engine: Engine, timeout: float) -> None:
    """Make ``engine`` open DeadlineConnections whose waits end after ``timeout`` s.

    Once a wait timed out, the rest of the request (a reconnect after a failed
    ping, the pool's next attempt) fails at once: the request answers 503 within
    one timeout, not two.
    """
    connection_class: type[DeadlineConnection] = type(
        "DeadlineConnection", (DeadlineConnection,), {"answer_timeout": float(timeout)}
    )

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        if _gave_up():
            raise DatabaseTimeoutError("the database did not answer earlier in this request")
        return connection_class.connect(*cargs, **cparams)
