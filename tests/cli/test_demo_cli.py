"""`authserver demo` never prints credentials that do not work."""

import json
from datetime import timedelta
from pathlib import Path

from flask import current_app

from authserver.services import clients as client_service
from authserver.services import users as user_service
from authserver.services.users import authenticate
from tests.factories import make_user


def printed(result):
    """The name/value pairs the command printed."""
    values = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in {"username", "password", "client_id", "client_secret"}:
            values[parts[0]] = parts[1]
    return values


def saved_file():
    return Path(current_app.instance_path) / "demo-credentials.json"


def test_demo_creates_working_credentials_and_shows_them_again(cli):
    first = cli.invoke(args=["demo"])
    assert first.exit_code == 0, first.output
    shown = printed(first)
    assert set(shown) == {"username", "password", "client_id", "client_secret"}
    assert authenticate(shown["username"], shown["password"]) is not None
    assert client_service.authenticate_client(shown["client_id"], shown["client_secret"])
    assert saved_file().stat().st_mode & 0o777 == 0o600

    again = cli.invoke(args=["demo"])
    assert printed(again) == shown


def test_demo_password_changed_is_reported_stale_and_not_printed(cli):
    shown = printed(cli.invoke(args=["demo"]))
    user_service.set_password("demo", "a brand new demo password")
    result = cli.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert "password" not in printed(result)
    assert shown["password"] not in result.stdout
    assert "no longer works" in result.stdout
    assert "set-password demo" in result.stdout
    # The client still works, so it is still shown.
    assert printed(result)["client_secret"] == shown["client_secret"]
    assert shown["password"] not in saved_file().read_text()


def test_demo_rotated_secret_is_reported_stale_and_not_printed(cli):
    shown = printed(cli.invoke(args=["demo"]))
    oauth_client = client_service.require_client(shown["client_id"])
    client_service.rotate_secret(oauth_client, overlap=timedelta(0), owner_id=shown["client_id"])
    result = cli.invoke(args=["demo"])
    assert "client_secret" not in printed(result)
    assert shown["client_secret"] not in result.stdout
    assert "rotate-secret ifttt-demo" in result.stdout
    assert printed(result)["password"] == shown["password"]


def test_demo_credentials_of_another_database_are_never_printed(cli):
    # Saved by a run against another database (same instance folder).
    saved_file().parent.mkdir(parents=True, exist_ok=True)
    saved_file().write_text(
        json.dumps(
            {
                "databases": {
                    "sqlite:////elsewhere/authserver.db": {
                        "username": "demo",
                        "password": "the-other-databases-password",
                        "client_id": "ifttt-demo",
                        "client_secret": "the-other-databases-secret",
                    }
                }
            }
        )
    )
    make_user(username="someone")
    result = cli.invoke(args=["demo"])
    assert "the-other-databases" not in result.stdout
    assert "already had users" in result.stdout
    # A fresh client was made here; its secret works.
    shown = printed(result)
    assert client_service.authenticate_client(shown["client_id"], shown["client_secret"])
    # The other database's entry is kept for when it is used again.
    assert "the-other-databases-password" in saved_file().read_text()


def test_demo_old_flat_file_is_checked_before_printing(cli):
    saved_file().parent.mkdir(parents=True, exist_ok=True)
    saved_file().write_text(json.dumps({"username": "demo", "password": "stale-password"}))
    make_user(username="demo", password="the real demo password")
    result = cli.invoke(args=["demo"])
    assert "stale-password" not in result.stdout
    assert "no longer works" in result.stdout
