"""`authserver audit`: read the audit trail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click
from flask.cli import AppGroup
from flask.cli import with_appcontext

from ..clock import utcnow
from ..models import AuditEvent
from ..services.audit import EVENT_TYPES
from ..services.audit import list_events
from ..services.audit import purge_events
from .output import Duration
from .output import emit_json
from .output import emit_table
from .output import human
from .output import iso
from .output import iso_text
from .output import json_option


@click.group("audit", cls=AppGroup, invoke_without_command=True)
@click.option("--since", type=Duration(), default=None, help="Only events this recent (24h, 7d).")
@click.option("--client", "client_id", default=None, help="Only events of this client.")
@click.option("--user", "username", default=None, help="Only events of this username.")
@click.option(
    "--type",
    "event_type",
    type=click.Choice(EVENT_TYPES),
    default=None,
    help="Only events of this type.",
)
@click.option("--limit", type=click.IntRange(1, 100000), default=1000, show_default=True)
@json_option
@click.pass_context
@with_appcontext
def audit_command(
    ctx: click.Context,
    since: timedelta | None,
    client_id: str | None,
    username: str | None,
    event_type: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show audit events, newest first (`audit purge` deletes old ones)."""
    if ctx.invoked_subcommand is not None:
        return
    events, cut = list_events(
        since=utcnow() - since if since is not None else None,
        client_id=client_id,
        username=username,
        event_type=event_type,
        limit=limit,
    )
    rows = [_row(e) for e in events]
    if as_json:
        emit_json(rows)
    else:
        emit_table(
            ["time", "type", "client_id", "resource_server", "username", "family", "details"],
            [
                [
                    r["time"],
                    r["type"],
                    r["client_id"],
                    r["resource_server"],
                    r["username"],
                    r["family"],
                    _details(
                        {
                            **r["details"],
                            "address": r["address"],
                            # A failure row stands for this many failures in its minute.
                            "count": r["count"] if r["count"] > 1 else None,
                        }
                    ),
                ]
                for r in rows
            ],
        )
    if cut:
        # On stderr, so the table or JSON document on stdout stays whole.
        click.echo(
            f"(newest {limit} events shown; older ones match too: raise --limit or narrow --since)",
            err=True,
        )


@audit_command.command("purge")
@click.option(
    "--older-than",
    "older_than",
    type=Duration(),
    required=True,
    help="Delete events older than this (90d).",
)
@json_option
def purge_command(older_than: timedelta, as_json: bool) -> None:
    """Delete audit events older than the given age (retention; run from cron)."""
    before = utcnow() - older_than
    deleted = purge_events(before=before)
    if as_json:
        emit_json({"deleted": deleted, "before": iso(before)})
    else:
        click.echo(f"Deleted {deleted} audit events from before {iso(before)}.")


# Ids some event types keep in their details; every row shows them in their own
# column, so one kind of id is always in the same place whatever the event type.
ID_DETAILS = ("resource_server", "family")


def _row(event: AuditEvent) -> dict[str, Any]:
    details = dict(event.details) if isinstance(event.details, dict) else {}
    ids = {key: details.pop(key, None) for key in ID_DETAILS}
    return {
        "time": iso(event.created_at),
        "type": event.event_type,
        "actor": event.actor,
        "client_id": event.client_id,
        "resource_server": ids["resource_server"],
        "username": event.username,
        "family": ids["family"],
        "details": {key: iso_text(value) for key, value in details.items()},
        "address": event.address,
        "count": event.count,
    }


def _details(details: dict[str, Any]) -> str:
    # One token per detail: lists join with bare commas, so columns split on spaces.
    return " ".join(
        f"{key}={','.join(map(human, value)) if isinstance(value, list) else human(value)}"
        for key, value in sorted(details.items())
        if value is not None
    )
