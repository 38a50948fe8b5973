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

DEMO_REDIRECT_URI = "https://ifttt.com/channels/demo_service/authorize"


@click.command("demo")
def demo_command() -> None:
    """Create a demo user and IFTTT client when the database has none; print them.

    Secrets are stored hashed, so the demo credentials are also kept (mode 0600) in
    the instance folder to be shown again on later runs.
    """
    path = Path(current_app.instance_path) / "demo-credentials.json"
    saved: dict[str, str] = {}
    if path.exists():
        saved = json.loads(path.read_text())
    if not user_service.list_users():
        password = secrets.token_urlsafe(12)
        user_service.create_user("demo", name="Demo User", password=password)
        saved.update(username="demo", password=password)
    if not client_service.list_clients():
        oauth_client, secret = client_service.register_client(
            "IFTTT (demo)", redirect_uris=[DEMO_REDIRECT_URI], client_id="ifttt-demo"
        )
        saved.update(client_id=oauth_client.client_id, client_secret=secret or "")
    if saved:
        make_private_folder(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(saved, handle)
    click.echo("Demo credentials (from " + str(path) + "):")
    for key in ("username", "password", "client_id", "client_secret"):
        if key in saved:
            click.echo(f"  {key:14} {saved[key]}")
    if "username" not in saved:
        click.echo("  (users existed before; no demo user was created)")
    click.echo(f"  redirect_uri   {DEMO_REDIRECT_URI}")
