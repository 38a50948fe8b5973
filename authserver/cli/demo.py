"""`authserver demo`: a demo user and IFTTT client for `make run`."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import click
from flask import current_app

from ..files import make_private_folder
from ..services import clients as client_service
from ..services import users as user_service
from .output import database_label

DEMO_REDIRECT_URI = "https://ifttt.com/channels/demo_service/authorize"
DEMO_CLIENT_ID = "ifttt-demo"
FILE_NAME = "demo-credentials.json"


def _load(path: Path) -> dict[str, dict[str, str]]:
    """Read the saved credentials, by database; unreadable files count as empty."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict):
        return {}
    if "databases" not in document:
        # The first format held one flat set, with no database: it is checked
        # against the current database below like any other.
        return {"": {k: str(v) for k, v in document.items() if isinstance(v, str)}}
    databases = document["databases"]
    return databases if isinstance(databases, dict) else {}


def _save(path: Path, databases: dict[str, dict[str, str]]) -> None:
    make_private_folder(path.parent)
    # Secrets are stored hashed in the database; this file (0600) is the only copy.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"databases": databases}, handle, indent=2, sort_keys=True)


def _user_works(saved: dict[str, str]) -> bool:
    if not saved.get("username") or not saved.get("password"):
        return False
    return user_service.authenticate(saved["username"], saved["password"]) is not None


def _client_works(saved: dict[str, str]) -> bool:
    if not saved.get("client_id") or not saved.get("client_secret"):
        return False
    found = client_service.authenticate_client(saved["client_id"], saved["client_secret"])
    return found is not None


@click.command("demo")
def demo_command() -> None:
    """Create a demo user and IFTTT client when the database has none; print them.

    Secrets are stored hashed, so the demo credentials are also kept (mode 0600) in
    the instance folder, per database, to be shown again on later runs. Saved
    credentials are checked against the database first: ones that no longer work
    (another database, a changed password, a rotated secret) are never printed.
    """
    path = Path(current_app.instance_path) / FILE_NAME
    where = database_label(str(current_app.config["DATABASE_URL"]))
    databases = _load(path)
    legacy = databases.pop("", {})
    saved: dict[str, str] = {**legacy, **databases.get(where, {})}
    notes: list[str] = []

    created_user = created_client = False
    if not user_service.list_users():
        password = secrets.token_urlsafe(12)
        user_service.create_user("demo", name="Demo User", password=password)
        saved.update(username="demo", password=password)
        created_user = True
    if not client_service.list_clients():
        oauth_client, secret = client_service.register_client(
            "IFTTT (demo)", redirect_uris=[DEMO_REDIRECT_URI], client_id=DEMO_CLIENT_ID
        )
        saved.update(client_id=oauth_client.client_id, client_secret=secret or "")
        created_client = True

    user_ok = created_user or _user_works(saved)
    client_ok = created_client or _client_works(saved)
    if not user_ok:
        if saved.get("username"):
            notes.append(
                f"The saved password of {saved['username']!r} no longer works in this database "
                "(changed, disabled or deleted); set one with "
                f"`authserver users set-password {saved['username']} --password-stdin`."
            )
        else:
            notes.append("This database already had users, so no demo user was created.")
        saved.pop("username", None)
        saved.pop("password", None)
    if not client_ok:
        if saved.get("client_id"):
            notes.append(
                f"The saved secret of client {saved['client_id']!r} no longer works in this "
                "database (rotated, disabled or deleted); "
                f"`authserver clients rotate-secret {saved['client_id']}` prints a new one."
            )
        else:
            notes.append("This database already had clients, so no demo client was created.")
        saved.pop("client_id", None)
        saved.pop("client_secret", None)

    if saved:
        databases[where] = saved
    else:
        databases.pop(where, None)
    if databases or path.exists():
        _save(path, databases)

    if saved:
        click.echo(f"Demo credentials for {where} (kept in {path}):")
    else:
        click.echo(f"No working demo credentials for {where}:")
    for key in ("username", "password", "client_id", "client_secret"):
        if key in saved:
            click.echo(f"  {key:14} {saved[key]}")
    if client_ok:
        click.echo(f"  redirect_uri   {DEMO_REDIRECT_URI}")
    for note in notes:
        click.echo(f"  {note}")
