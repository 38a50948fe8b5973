"""Fixtures: one migrated database per session, a fresh app per test."""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask import has_app_context
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from flask_migrate import upgrade
from sqlalchemy import create_engine
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from authserver import create_app
from authserver.database import db
from authserver.models import OAuth2Client
from authserver.models import User

from .factories import IFTTT_REDIRECT
from .factories import authorize_url
from .factories import make_oauth_client
from .factories import make_user
from .factories import query_of

TEST_SECRET_KEY = "test-secret-key-" + "0" * 32


def _database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("AUTHSERVER_TEST_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.db")


def _create_database_if_missing(url: str) -> None:
    """Create the PostgreSQL test database named in the URL when it does not exist yet."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    if not parsed.drivername.startswith("postgresql") or not parsed.database:
        return
    engine = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": parsed.database},
            ).scalar()
            if not exists:
                quoted = connection.dialect.identifier_preparer.quote(parsed.database)
                connection.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        engine.dispose()


def _drop_everything(url: str) -> None:
    from authserver.database import Base

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database migrated to head once per session (never create_all)."""
    import authserver.models  # noqa: F401

    url = _database_url(tmp_path_factory)
    _create_database_if_missing(url)
    _drop_everything(url)
    app = create_app(base_config(url, tmp_path_factory.mktemp("instance")))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


def base_config(url: str, instance: Any = None) -> dict[str, Any]:
    return {
        "DATABASE_URL": url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "ISSUER": "http://localhost",
        "RATE_LIMITS": "off",
        "LOG_FORMAT": "text",
    }


def _in_own_context(call: Callable[[], Any]) -> Any:
    """Run a request or CLI call in an app context (and database session) of its own.

    The test body keeps an app context for arranging and asserting, but a request or
    CLI call must not join it: in production each has its own context, and its session
    ends (rolling back whatever it did not commit) when the call returns. So the call
    runs in an empty ``contextvars.Context``, where Flask pushes a fresh context, and
    the test's own session ends its transaction before (holding no locks, and dropping
    uncommitted writes the call must not see) and after (so the test then reads the
    call's committed effects, and only those, through its own connection).
    """
    outer = has_app_context()
    if outer:
        db.session.rollback()
    try:
        return contextvars.Context().run(call)
    finally:
        if outer:
            db.session.rollback()


class OwnContextClient(FlaskClient):
    """A test client whose every request runs in its own app context, as on a server."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        return _in_own_context(lambda: super(OwnContextClient, self).open(*args, **kwargs))


class OwnContextCliRunner(FlaskCliRunner):
    """A CLI runner whose every command runs in its own app context, as from a shell.

    Commands go through the ``authserver`` console script's own group (not
    ``app.cli``), which pushes the app context for each command as it does in use.
    """

    # The same signature as FlaskCliRunner.invoke, which itself narrows click's.
    def invoke(self, cli: Any = None, args: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        from authserver.cli import build_cli

        group = build_cli() if cli is None else cli
        invoke = super().invoke
        return _in_own_context(lambda: invoke(group, args, **kwargs))


@pytest.fixture
def app(
    request: pytest.FixtureRequest,
    database_url: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Flask]:
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path / "instance"))
    config = base_config(database_url)
    marker = request.node.get_closest_marker("app_config")
    if marker is not None:
        config.update(marker.kwargs)
    application = create_app(config)
    application.config["TESTING"] = True
    application.test_client_class = OwnContextClient
    application.test_cli_runner_class = OwnContextCliRunner
    # The test body's own context: factories and assertions use its session, a
    # connection separate from every request's and CLI call's (see _in_own_context).
    with application.app_context():
        yield application
        empty_database()


def empty_database() -> None:
    """Delete every row (children first) and drop the app's connections."""
    db.session.rollback()
    db.session.remove()
    with db.engine.begin() as connection:
        for table in reversed(db.metadata.sorted_tables):
            connection.execute(table.delete())
    db.engine.dispose()


@pytest.fixture
def committed(database_url: str) -> Iterator[Callable[..., list[Any]]]:
    """Run a query on a connection of its own, which sees only committed rows.

    For asserting a state change: neither the test's session nor the request's can
    show an uncommitted write here.
    """
    engine = create_engine(
        database_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=NullPool
    )

    def fetch(statement: Any, **params: Any) -> list[Any]:
        with engine.connect() as connection:
            return list(connection.execute(statement, params))

    yield fetch
    engine.dispose()


@pytest.fixture
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the hash of every argon2 verification (timing checks count them)."""
    from argon2 import PasswordHasher

    calls: list[str] = []
    original = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str, password: str) -> bool:
        calls.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return calls


@pytest.fixture
def http(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def cli(app: Flask) -> Any:
    return app.test_cli_runner(mix_stderr=False) if _runner_mixes() else app.test_cli_runner()


def _runner_mixes() -> bool:
    import inspect

    from click.testing import CliRunner

    return "mix_stderr" in inspect.signature(CliRunner.__init__).parameters


# The shared user and client each have a bystander registered just before them, so
# their ids are never 1 and a lower id exists: a query keyed by owner that compares
# ids wrongly (<= instead of ==) finds the bystander's rows too.
@pytest.fixture
def user(app: Flask) -> User:
    make_user(username="bystander", name="Bystander")
    return make_user(username="walter", name="Walter White")


@pytest.fixture
def oauth_client_pair(app: Flask) -> tuple[OAuth2Client, str]:
    make_oauth_client(name="Bystander app", client_id="bystander-app")
    oauth_client, secret = make_oauth_client(name="IFTTT", client_id="ifttt")
    assert secret is not None
    return oauth_client, secret


@pytest.fixture
def oauth_client(oauth_client_pair: tuple[OAuth2Client, str]) -> OAuth2Client:
    return oauth_client_pair[0]


@pytest.fixture
def client_secret(oauth_client_pair: tuple[OAuth2Client, str]) -> str:
    return oauth_client_pair[1]


def log_in(http: FlaskClient, user: User) -> None:
    """Inject a login into the test client's cookie, as the login page makes one."""
    from authserver.blueprints.auth import SESSION_ID_KEY
    from authserver.services.sessions import open_session

    session_id = open_session(user, lifetime=http.application.permanent_session_lifetime)
    with http.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
        session[SESSION_ID_KEY] = session_id


@pytest.fixture
def login_as(http: FlaskClient) -> Callable[[User], None]:
    def _login(user: User) -> None:
        log_in(http, user)

    return _login


def csrf_token_of(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token"[^>]*value="([^"]+)"', html
    )
    assert match, "no CSRF token in page"
    return match.group(1)


@pytest.fixture
def get_code(http: FlaskClient, login_as: Callable[[User], None]) -> Callable[..., str]:
    """Drive authorize → consent (allow) for a logged-in user; return the code."""

    def _get_code(user: User, oauth_client: OAuth2Client, **params: str) -> str:
        login_as(user)
        url = authorize_url(oauth_client.client_id, **params)
        page = http.get(url)
        if page.status_code == 200:
            page = http.post(
                url,
                data={
                    "csrf_token": csrf_token_of(page.get_data(as_text=True)),
                    "decision": "allow",
                },
            )
        assert page.status_code == 302, page.get_data(as_text=True)
        query = query_of(page.headers["Location"])
        assert "code" in query, page.headers["Location"]
        return query["code"]

    return _get_code


@pytest.fixture
def exchange(http: FlaskClient) -> Callable[..., Any]:
    """POST the code exchange exactly as IFTTT does (form body, secret in the body)."""

    def _exchange(code: str, client_id: str, secret: str | None, **extra: str) -> Any:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "redirect_uri": IFTTT_REDIRECT,
        }
        if secret is not None:
            data["client_secret"] = secret
        data.update(extra)
        return http.post("/oauth/token", data=data)

    return _exchange


@pytest.fixture
def refresh(http: FlaskClient) -> Callable[..., Any]:
    def _refresh(refresh_token: str, client_id: str, secret: str, **extra: str) -> Any:
        data = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
            "client_secret": secret,
        }
        data.update(extra)
        return http.post("/oauth/token", data=data)

    return _refresh
