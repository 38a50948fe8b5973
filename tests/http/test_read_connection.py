"""database.read_connection: the request session's connection if it has one, else a pooled one."""

from sqlalchemy import func
from sqlalchemy import select

from authserver.database import connection_for_reads
from authserver.database import db
from authserver.database import read_connection
from authserver.models import User
from tests.factories import make_user


def _count_users(connection) -> int:
    return connection.execute(select(func.count()).select_from(User)).scalar_one()


def test_without_a_session_the_read_makes_none(app):
    make_user()
    with app.app_context():
        with read_connection() as connection:
            assert _count_users(connection) == 1
        assert not db.session.registry.has()


def test_a_read_joins_the_sessions_open_transaction(app):
    with app.app_context():
        db.session.add(User(username="pending", name="Pending", password_hash="x"))
        db.session.flush()
        with read_connection() as connection:
            # The session's own pending row: the read runs on its connection.
            assert _count_users(connection) == 1
            assert connection is db.session.connection()
        db.session.rollback()


def test_nested_reads_share_the_lent_connection(app):
    make_user()
    with app.app_context():
        with read_connection() as outer:
            with read_connection() as inner:
                assert inner is outer
            # What the services' reads use inside an edge's block.
            assert connection_for_reads() is outer
            assert _count_users(outer) == 1
        assert not db.session.registry.has()
        # Outside any block, the session's own connection.
        assert connection_for_reads() is db.session.connection()
