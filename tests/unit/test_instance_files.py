"""The instance folder and the SQLite files are private to the server's user."""

import os
import stat

import pytest
from flask_migrate import upgrade
from sqlalchemy import text

from authserver import create_app
from authserver.database import db
from tests.conftest import TEST_SECRET_KEY


@pytest.fixture
def permissive_umask():
    """The worst case: a umask that takes nothing away."""
    previous = os.umask(0)
    yield
    os.umask(previous)


@pytest.fixture
def instance(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("AUTHSERVER_"):
            monkeypatch.delenv(name)
    folder = tmp_path / "deploy" / "instance"
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(folder))
    return folder


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def write_something():
    with db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS probe (n INTEGER)"))
        connection.execute(text("INSERT INTO probe VALUES (1)"))


@pytest.mark.usefixtures("permissive_umask")
def test_default_instance_folder_and_sqlite_files_are_private(instance):
    app = create_app({"ISSUER": "http://localhost", "LOG_FORMAT": "text"})
    assert mode(instance) == 0o700
    assert mode(instance / "secret_key") == 0o600
    with app.app_context():
        try:
            upgrade()
            database = instance / "authserver.db"
            with db.engine.connect() as reader:
                reader.execute(text("SELECT 1")).scalar()
                write_something()
                files = {p.name: mode(p) for p in instance.iterdir()}
            assert files == {
                "secret_key": 0o600,
                "authserver.db": 0o600,
                "authserver.db-wal": 0o600,
                "authserver.db-shm": 0o600,
            }
            # SQLite deletes the WAL and SHM files when the last connection closes and
            # creates them again later, by itself: still private.
            db.engine.dispose()
            assert not (instance / "authserver.db-wal").exists()
            write_something()
            assert mode(instance / "authserver.db-wal") == 0o600
            assert mode(instance / "authserver.db-shm") == 0o600
            assert mode(database) == 0o600
        finally:
            db.engine.dispose()


@pytest.mark.usefixtures("permissive_umask")
def test_instance_folder_is_created_private_for_the_database_alone(instance):
    # With an explicit secret key nothing else creates the folder first.
    app = create_app(
        {"ISSUER": "http://localhost", "LOG_FORMAT": "text", "SECRET_KEY": TEST_SECRET_KEY}
    )
    with app.app_context():
        try:
            upgrade()
        finally:
            db.engine.dispose()
    assert mode(instance) == 0o700
    assert mode(instance / "authserver.db") == 0o600
    # Only the instance folder itself: the folders above it are the admin's.
    assert mode(instance.parent) == 0o777


def test_existing_instance_folder_keeps_its_mode(instance):
    instance.mkdir(parents=True)
    instance.chmod(0o750)
    create_app({"ISSUER": "http://localhost", "LOG_FORMAT": "text"})
    assert mode(instance) == 0o750
