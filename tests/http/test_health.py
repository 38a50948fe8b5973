import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from flask import Flask
from flask import jsonify
from flask_migrate import upgrade

from authserver import create_app
from authserver import resource_dir
from authserver.database import db
from tests.conftest import base_config
from tests.system.conftest import free_port


def shipped_revisions() -> tuple[str, str]:
    """Return (head, the revision just before it), read from the migrations folder."""
    config = Config()
    config.set_main_option("script_location", resource_dir("migrations"))
    script = ScriptDirectory.from_config(config)
    head = script.get_revision("head")
    assert head is not None
    assert isinstance(head.down_revision, str), "head must have one parent"
    return head.revision, head.down_revision


@pytest.fixture
def other_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Flask]]:
    """Build apps on databases other than the session's migrated one."""
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path / "instance"))
    built: list[Flask] = []

    def _make(url: str, **settings: Any) -> Flask:
        application = create_app({**base_config(url), **settings})
        application.config["TESTING"] = True
        built.append(application)
        return application

    yield _make
    for application in built:
        with application.app_context():
            db.engine.dispose()


def test_healthz_answers_ok_without_database_work(http):
    response = http.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_ready_when_migrated_to_head(http):
    head, _ = shipped_revisions()
    response = http.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "revision": head,
        "redis": "not configured",
    }
    assert response.mimetype == "application/json"


def test_readyz_unavailable_when_database_not_migrated(other_app, tmp_path):
    head, _ = shipped_revisions()
    fresh = other_app("sqlite:///" + str(tmp_path / "fresh.db"))
    response = fresh.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "unavailable",
        "reason": f"database not migrated, expected {head}",
        "redis": "not configured",
    }


def test_readyz_unavailable_when_schema_behind_head(other_app, tmp_path):
    head, previous = shipped_revisions()
    behind = other_app("sqlite:///" + str(tmp_path / "behind.db"))
    with behind.app_context():
        upgrade(revision=previous)
    http = behind.test_client()
    response = http.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"] == f"schema at {previous}, expected {head}"
    # Readiness is probed on every call: migrating makes the same app ready.
    with behind.app_context():
        upgrade()
    assert http.get("/readyz").status_code == 200


def test_readyz_unavailable_when_database_unreachable(other_app):
    dead = other_app(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere", DB_TIMEOUT_SECONDS=1
    )
    http = dead.test_client()
    started = time.monotonic()
    response = http.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "unavailable",
        "reason": "database unreachable",
        "redis": "not configured",
    }
    assert http.get("/healthz").status_code == 200


def test_endpoints_answer_503_in_their_shape_when_database_unreachable(other_app, caplog):
    dead = other_app(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere", DB_TIMEOUT_SECONDS=1
    )
    http = dead.test_client()
    token = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "r" * 43,
            "client_id": "ifttt",
            "client_secret": "s" * 43,
        },
    )
    introspection = http.post(
        "/oauth/introspect", data={"token": "a" * 43}, auth=("rs_shim", "s" * 43)
    )
    user_info = http.get("/ifttt/v1/user/info", headers={"Authorization": "Bearer " + "a" * 43})
    for response in (token, introspection):
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.get_json()["error"] == "temporarily_unavailable"
        assert response.headers["Retry-After"]
    # IFTTT's shape: a 401 would count toward disabling the user's Applets.
    assert user_info.status_code == 503
    assert set(user_info.get_json()) == {"errors"}
    assert "database unavailable" in caplog.text


def test_healthz_answers_jsonify_s_exact_response(app: Flask) -> None:
    with app.test_request_context():
        expected = jsonify(status="ok")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_data() == expected.get_data()
    assert response.headers["Content-Type"] == expected.headers["Content-Type"]
