"""`authserver audit`: read the audit trail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from ..clock import utcnow
from ..services.audit import EVENT_TYPES
from ..services.audit import list_events
from .output import Duration
from .output import emit_json
from .output import emit_table
from .output import iso
from .output import json_option


@click.command("audit")
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
def audit_command(
    since: timedelta | None,
    client_id: str | None,
    username: str | None,
    event_type: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show audit events, oldest first."""
    events = list_events(
        since=utcnow() - since if since is not None else None,
        client_id=client_id,
        username=username,
        event_type=event_type,
        limit=limit,
    )
    rows = [
        {
            "time": iso(e.created_at),
            "type": e.event_type,
            "actor": e.actor,
            "client_id": e.client_id,
            "username": e.username,
            "details": e.details,
        }
        for e in events
    ]
    if as_json:
        emit_json(rows)
        return
    emit_table(
        ["time", "type", "client_id", "username", "details"],
        [
            [
                r["time"],
                r["type"],
                r["client_id"] or "",
                r["username"] or "",
                _details(r["details"]),
            ]
            for r in rows
        ],
    )


def _details(details: Any) -> str:
    if not isinstance(details, dict):
        return ""
    return " ".join(f"{k}={v}" for k, v in sorted(details.items()))
