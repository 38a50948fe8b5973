"""Secret rotation commands shared by `clients` and `resource-servers`."""

from __future__ import annotations

from datetime import timedelta

import click

from ..clock import utcnow
from ..models import OAuth2Client
from ..models import ResourceServer
from ..services import clients as client_service
from .output import emit_json
from .output import emit_table
from .output import iso


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


DEFAULT_OVERLAP = timedelta(hours=24)
