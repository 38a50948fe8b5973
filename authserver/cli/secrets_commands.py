"""Secret rotation commands shared by `clients` and `resource-servers`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import click
from flask.cli import AppGroup

from ..clock import utcnow
from ..models import OAuth2Client
from ..models import ResourceServer
from ..services import clients as client_service
from .output import Duration
from .output import domain_errors
from .output import emit_json
from .output import emit_table
from .output import iso
from .output import json_option

Owner = OAuth2Client | ResourceServer


def add_secret_commands(
    group: AppGroup,
    *,
    noun: str,
    argument: str,
    id_key: str,
    require: Callable[[str], Owner],
    can_rotate: Callable[[Owner, str], None] | None = None,
) -> None:
    """Register `rotate-secret`, `secrets` and `expire-secret` on a group.

    Clients and resource servers hold secrets the same way (CredentialSecret rows,
    at most two live), so their commands are one definition with the noun changed.
    """

    @group.command("rotate-secret")
    @click.argument(argument)
    @click.option(
        "--overlap",
        type=Duration(),
        default="24h",
        show_default=True,
        help="How long the previous secret keeps working (90s, 15m, 24h, 7d, 0).",
    )
    @json_option
    @domain_errors
    def rotate_secret(overlap: timedelta, as_json: bool, **ids: str) -> None:
        """Issue a new secret; the previous one works until the overlap ends."""
        owner_id = ids[argument]
        owner = require(owner_id)
        if can_rotate is not None:
            can_rotate(owner, owner_id)
        issued = client_service.rotate_secret(owner, overlap=overlap, owner_id=owner_id)
        print_rotation(noun, issued, as_json, id_key)

    @group.command("secrets")
    @click.argument(argument)
    @json_option
    @domain_errors
    def list_secrets(as_json: bool, **ids: str) -> None:
        print_secrets(require(ids[argument]), as_json)

    list_secrets.help = (
        f"List a {noun}'s live secrets (created, expiry, last use; never the value)."
    )

    @group.command("expire-secret")
    @click.argument(argument)
    @click.option("--old", "old", is_flag=True, help="End the previous secret's overlap now.")
    @domain_errors
    def expire_secret(old: bool, **ids: str) -> None:
        """End the overlap now: only the newest secret keeps working."""
        if not old:
            raise click.UsageError("say which secret to expire: --old")
        owner_id = ids[argument]
        ended = client_service.expire_old_secrets(require(owner_id), owner_id=owner_id)
        click.echo(
            f"Ended {ended} previous secret(s) of {owner_id}."
            if ended
            else f"{noun.capitalize()} {owner_id} has no previous secret in an overlap."
        )


def print_rotation(
    owner_label: str, issued: client_service.IssuedSecret, as_json: bool, id_key: str
) -> None:
    """Show a freshly rotated secret once, and when the old one stops working."""
    if as_json:
        emit_json(
            {
                id_key: issued.owner_id,
                "client_secret": issued.secret,
                "old_secret_expires_at": iso(issued.old_secret_expires_at),
            }
        )
    else:
        click.echo(f"New secret for {owner_label} {issued.owner_id} (shown once):")
        click.echo(f"  {issued.secret}")
        if issued.old_secret_expires_at is None:
            click.echo("There was no previous secret.")
        elif issued.old_secret_expires_at <= utcnow():
            click.echo("The previous secret stopped working now.")
        else:
            click.echo(
                f"The previous secret keeps working until {iso(issued.old_secret_expires_at)}."
            )
    if issued.ended_early:
        click.echo(
            f"Note: {issued.ended_early} older secret(s) still in an overlap ended now "
            "(at most two secrets are live).",
            err=True,
        )


def print_secrets(owner: OAuth2Client | ResourceServer, as_json: bool) -> None:
    """List the live secrets of an owner (never the secret values)."""
    live = owner.live_secrets()
    rows = [
        {
            "id": s.id,
            "status": "current" if i == 0 else "previous",
            "created_at": iso(s.created_at),
            "expires_at": iso(s.expires_at),
            "last_used_at": iso(s.last_used_at),
        }
        for i, s in enumerate(live)
    ]
    if as_json:
        emit_json(rows)
        return
    emit_table(
        ["id", "status", "created", "expires", "last used"],
        [
            [
                r["id"],
                r["status"],
                r["created_at"],
                r["expires_at"] or "never",
                r["last_used_at"] or "never",
            ]
            for r in rows
        ],
    )
