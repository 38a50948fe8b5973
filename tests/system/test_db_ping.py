"""Pooled PostgreSQL connections that died while idle are replaced, not used.

The server (PostgreSQL at 127.0.0.1, as in CI) kills the backend behind a pooled
connection, as a restart or failover would. With the idle ping the next checkout
gets a working connection; without it (a long idle threshold) the dead connection
is handed out and its first query fails, which shows the test can tell them apart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from authserver import create_app
from authserver.database import db
from tests.conftest import base_config

SERVER = os.environ.get("AUTHSERVER_TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture
def make_app() -> Iterator[object]:
    apps = []

    def build(idle_seconds: int) -> object:
        config = base_config(
            SERVER.replace("postgresql://", "postgresql+psycopg://", 1) + "/postgres"
        )
        config["DB_PING_AFTER_IDLE_SECONDS"] = idle_seconds
        app = create_app(config, cli=False)
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.engine.dispose()


def backend_pid() -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(pid: int) -> None:
    with psycopg.connect(SERVER + "/postgres", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # The backend exits asynchronously.
    time.sleep(0.2)


def test_connection_killed_while_idle_is_replaced_at_checkout(make_app):
    app = make_app(1)
    with app.app_context():
        dead = backend_pid()
        terminate(dead)
        time.sleep(1.1)
        # Same pool, next checkout: the ping finds the dead connection and reconnects.
        alive = backend_pid()
        assert alive != dead


def test_connection_reused_within_the_idle_window_is_not_pinged(make_app):
    app = make_app(3600)
    with app.app_context():
        dead = backend_pid()
        terminate(dead)
        # Within the window nothing tests it: the first query meets the dead backend
        # (the request would answer 503), and the pool then starts afresh.
        with pytest.raises(OperationalError):
            backend_pid()
        assert backend_pid() != dead


def test_ping_every_checkout_when_idle_threshold_is_zero(make_app):
    app = make_app(0)
    with app.app_context():
        dead = backend_pid()
        terminate(dead)
        assert backend_pid() != dead
