from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import downgrade
from flask_migrate import upgrade
from sqlalchemy import create_engine
from sqlalchemy import inspect
from sqlalchemy import text
from sqlalchemy.engine import make_url

from authserver import create_app
from authserver import resource_dir
from authserver.database import db
from tests.conftest import base_config


@pytest.fixture
def empty_database_url(database_url: str, tmp_path) -> Iterator[str]:
    """A brand-new, empty database beside the session's (which stays untouched)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield "sqlite:///" + str(tmp_path / "migrations.db")
        return
    # PostgreSQL: a throwaway database on the same server, dropped afterwards.
    name = f"{url.database}_mig"
    server = create_engine(
        url.set(drivername="postgresql+psycopg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        server.dispose()


@pytest.fixture
def fresh_app(empty_database_url: str, tmp_path, monkeypatch) -> Iterator[Flask]:
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path / "instance"))
    application = create_app(base_config(empty_database_url))
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


def schema_drift() -> list[Any]:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True}
        )
        return compare_metadata(context, db.metadata)


def user_tables() -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def current_revision() -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def revisions_oldest_first() -> list[str]:
    script = ScriptDirectory(resource_dir("migrations"))
    assert len(script.get_heads()) == 1, "migrations must have a single head"
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_empty_database_upgraded_to_head_has_exactly_the_models_schema(fresh_app):
    assert user_tables() == set()
    upgrade()
    assert current_revision() == revisions_oldest_first()[-1]
    assert user_tables() == set(db.metadata.tables)
    assert schema_drift() == []


def test_db_check_command_reports_no_drift(fresh_app):
    upgrade()
    result = fresh_app.test_cli_runner().invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output


def test_drift_detector_notices_a_missing_index(fresh_app):
    """The drift check can fail: remove one index and it must say so."""
    upgrade()
    with db.engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_audit_events_event_type"))
    drift = schema_drift()
    assert [d[0] for d in drift] == ["add_index"]
    assert drift[0][1].name == "ix_audit_events_event_type"
    result = fresh_app.test_cli_runner().invoke(args=["db", "check"])
    assert result.exit_code != 0


def test_downgrade_to_base_then_upgrade_to_head(fresh_app):
    upgrade()
    downgrade(revision="base")
    assert user_tables() == set()
    assert current_revision() is None
    upgrade()
    assert user_tables() == set(db.metadata.tables)
    assert schema_drift() == []


def test_each_revision_upgrades_and_downgrades_one_step(fresh_app):
    revisions = revisions_oldest_first()
    for revision in revisions:
        upgrade(revision=revision)
        assert current_revision() == revision
    for previous in [*reversed(revisions[:-1]), None]:
        downgrade(revision=previous or "base")
        assert current_revision() == previous
    assert user_tables() == set()


def test_upgrade_twice_is_a_no_op(fresh_app):
    upgrade()
    upgrade()
    assert schema_drift() == []


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app(base_config("sqlite:///" + str(tmp_path / "wal.db")))
    with app.app_context():
        try:
            with db.engine.connect() as connection:
                assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
                # The database timeout (AUTHSERVER_DB_TIMEOUT_SECONDS, 5 by default).
                timeout = connection.execute(text("PRAGMA busy_timeout")).scalar()
                assert timeout == 5000
                assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        finally:
            db.engine.dispose()


def test_readiness_head_agrees_with_alembic():
    # /readyz reads the head without importing Alembic (worker memory); it must never
    # disagree with what `authserver db upgrade` migrates to.
    from authserver.migrations_state import head_revision

    directory = resource_dir("migrations")
    assert head_revision(directory) == ScriptDirectory(directory).get_current_head()


def test_readiness_head_refuses_a_branched_history(tmp_path):
    from authserver.migrations_state import head_revision

    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "a.py").write_text("revision = 'a'\ndown_revision = None\n")
    (versions / "b.py").write_text("revision: str = 'b'\ndown_revision = 'a'\n")
    assert head_revision(str(tmp_path)) == "b"
    (versions / "c.py").write_text("revision = 'c'\ndown_revision = 'a'\n")
    with pytest.raises(ValueError, match="several migration heads"):
        head_revision(str(tmp_path))
    (versions / "d.py").write_text("revision = 'd'\ndown_revision = ('b', 'c')\n")
    assert head_revision(str(tmp_path)) == "d"


def oauth2_clients_triggers() -> set[str]:
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            query = (
                "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND c.relname = 'oauth2_clients'"
            )
        else:
            query = (
                "SELECT name FROM sqlite_master "
                "WHERE type = 'trigger' AND tbl_name = 'oauth2_clients'"
            )
        return {row[0] for row in connection.execute(text(query))}


def test_refresh_policy_migration_keeps_existing_clients_on_ifttt_and_the_triggers(fresh_app):
    """0010: clients from before keep today's behaviour; oauth2_clients keeps its triggers."""
    upgrade(revision="0009")
    triggers = oauth2_clients_triggers()
    assert triggers
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO oauth2_clients (client_id, name, redirect_uris, scopes, "
                "is_confidential, disabled, created_at) VALUES ('old-public', 'Old', "
                "'[\"https://example.com/cb\"]', '[\"ifttt\"]', false, false, '2030-01-01')"
            )
        )
    upgrade(revision="0010")
    assert oauth2_clients_triggers() == triggers
    with db.engine.connect() as connection:
        profile = connection.execute(
            text("SELECT refresh_profile FROM oauth2_clients WHERE client_id = 'old-public'")
        ).scalar()
    assert profile == "ifttt"
    downgrade(revision="0009")
    assert oauth2_clients_triggers() == triggers
    upgrade()
    assert oauth2_clients_triggers() == triggers
