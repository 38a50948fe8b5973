"""`authserver audit`: read the audit trail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from ..clock import utcnow
from ..models import AuditEvent
from ..services.audit import EVENT_TYPES
from ..services.audit import list_events
from .output import Duration
from .output import emit_json
from .output import emit_table
from .output import human
from .output import iso
from .output import iso_text
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
    rows = [_row(e) for e in events]
    if as_json:
        emit_json(rows)
        return
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
                _details(r["details"]),
            ]
            for r in rows
        ],
    )


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
    }


def _details(details: dict[str, Any]) -> str:
    # One token per detail: lists join with bare commas, so columns split on spaces.
    return " ".join(
        f"{key}={','.join(map(human, value)) if isinstance(value, list) else human(value)}"
        for key, value in sorted(details.items())
        if value is not None
    )
