"""`authserver users ...`."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from ..models import User
from ..services import consents as consent_service
from ..services import users as user_service
from ..services.users import MAX_PASSWORD_LENGTH
from .output import domain_errors
from .output import emit_json
from .output import emit_table
from .output import iso
from .output import json_option

users = AppGroup("users", help="Create and manage end users.")


def _user_document(user: User) -> dict[str, object]:
    return {
        "id": user.public_id,
        "username": user.username,
        "name": user.name,
        "email": user.email,
        "disabled": user.disabled,
        "created_at": iso(user.created_at),
    }


def read_password(from_stdin: bool) -> str:
    """Read a password from stdin (first line) or prompt twice on a terminal."""
    if from_stdin:
        try:
            data = sys.stdin.readline(MAX_PASSWORD_LENGTH + 2).rstrip("\r\n")
            # Under a C locale stdin decodes with surrogateescape; argon2 needs UTF-8.
            data.encode("utf-8")
        except UnicodeError:
            raise click.ClickException("the password on stdin is not valid UTF-8") from None
        return data
    if not sys.stdin.isatty():
        raise click.ClickException(
            "no terminal to prompt for a password; pass --password-stdin and pipe it"
        )
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@users.command("create")
@click.argument("username")
@click.option("--name", required=True, help="Display name shown to IFTTT.")
@click.option("--email", default=None, help="Optional e-mail address.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@json_option
@domain_errors
def create(
    username: str, name: str, email: str | None, password_stdin: bool, as_json: bool
) -> None:
    """Create a user."""
    password = read_password(password_stdin)
    user = user_service.create_user(username, name=name, email=email, password=password)
    if as_json:
        emit_json(_user_document(user))
    else:
        click.echo(f"Created user {user.username} (id {user.public_id}).")


@users.command("list")
@json_option
@domain_errors
def list_command(as_json: bool) -> None:
    """List users."""
    rows = user_service.list_users()
    if as_json:
        emit_json([_user_document(u) for u in rows])
        return
    emit_table(
        ["username", "id", "name", "email", "disabled", "created"],
        [
            [
                u.username,
                u.public_id,
                u.name,
                u.email,
                "yes" if u.disabled else "no",
                iso(u.created_at),
            ]
            for u in rows
        ],
    )


@users.command("show")
@click.argument("username")
@json_option
@domain_errors
def show(username: str, as_json: bool) -> None:
    """Show a user and the apps they have connected."""
    user = user_service.require_user(username)
    apps = consent_service.connected_apps(user)
    if as_json:
        document = _user_document(user)
        document["connected_apps"] = [
            {
                "client_id": a.client_id,
                "name": a.name,
                "scopes": a.scopes,
                "connected_at": iso(a.connected_at),
                "live_grants": a.live_grants,
            }
            for a in apps
        ]
        emit_json(document)
        return
    click.echo(
        f"{user.username} ({user.name}) id={user.public_id} "
        f"disabled={'yes' if user.disabled else 'no'}"
    )
    emit_table(
        ["client_id", "name", "scopes", "connected", "live grants"],
        [
            [a.client_id, a.name, " ".join(a.scopes), iso(a.connected_at), a.live_grants]
            for a in apps
        ],
    )


@users.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@domain_errors
def set_password(username: str, password_stdin: bool) -> None:
    """Change a user's password (ends their sessions)."""
    user_service.require_user(username)
    user_service.set_password(username, read_password(password_stdin))
    click.echo(f"Password changed for {username}.")


@users.command("disable")
@click.argument("username")
@domain_errors
def disable(username: str) -> None:
    """Disable a user: no logins, no tokens."""
    user_service.set_disabled(username, disabled=True)
    click.echo(f"Disabled {username}.")


@users.command("enable")
@click.argument("username")
@domain_errors
def enable(username: str) -> None:
    """Enable a disabled user."""
    user_service.set_disabled(username, disabled=False)
    click.echo(f"Enabled {username}.")


@users.command("delete")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@domain_errors
def delete(username: str, yes: bool) -> None:
    """Delete a user and revoke all their tokens."""
    user_service.require_user(username)
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException("refusing to delete without --yes (no terminal to ask)")
        click.confirm(f"Delete {username} and revoke all their tokens?", abort=True)
    user_service.delete_user(username)
    click.echo(f"Deleted {username}; their tokens are revoked.")
