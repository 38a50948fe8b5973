"""SQLite: a writer held up by another's lock answers 503 within the database timeout.

SQLite cannot freeze like a server, but a write waits for the write lock (another
process's long transaction, an admin's open sqlite3 shell) up to its busy timeout.
Each test uses a SQLite file of its own, whatever the suite's database.
"""

import sqlite3
import time

import pytest
from flask_migrate import upgrade

from authserver import create_app
from authserver.database import db
from authserver.services import clients as client_service
from tests.conftest import base_config
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user

DB_TIMEOUT = 1


@pytest.fixture
def sqlite_app(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path / "instance"))
    path = tmp_path / "locked.db"
    config = base_config("sqlite:///" + str(path))
    config["DB_TIMEOUT_SECONDS"] = DB_TIMEOUT
    application = create_app(config)
    application.config["TESTING"] = True
    with application.app_context():
        upgrade()
        yield application, path
        db.session.remove()
        db.engine.dispose()


def test_write_waiting_for_a_lock_answers_503_within_the_timeout(sqlite_app):
    app, path = sqlite_app
    user = make_user(username="walter")
    oauth_client, secret = make_oauth_client(client_id="ifttt")
    tokens = make_tokens(user, oauth_client)
    resource_server, rs_secret = client_service.register_resource_server("Trigger shim")
    shim = (resource_server.server_id, rs_secret)
    db.session.remove()
    http = app.test_client()
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": "ifttt",
        "client_secret": secret,
    }
    introspect = {"token": tokens["access_token"]}
    # The shim's first call notes its secret's use (a write); later ones only read.
    assert http.post("/oauth/introspect", data=introspect, auth=shim).status_code == 200
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock, as a stuck writer would
        started = time.monotonic()
        response = http.post("/oauth/token", data=refresh)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.get_json()["error"] == "temporarily_unavailable"
        assert elapsed < DB_TIMEOUT + 1, f"answered after {elapsed:.2f}s"
        # Readers are not held up (WAL): introspection still answers.
        introspection = http.post("/oauth/introspect", data=introspect, auth=shim)
        assert introspection.get_json()["active"] is True
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    db.session.remove()
    assert http.post("/oauth/token", data=refresh).status_code == 200
