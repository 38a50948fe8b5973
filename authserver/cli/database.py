"""`authserver db ...`: Flask-Migrate's commands, with upgrade and downgrade reporting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate.cli import db as migrate_db

from ..database import db
from .output import database_label


def current_revision() -> str | None:
    """Return the database's Alembic revision (None before the first migration)."""
    with db.engine.connect() as connection:
        revision: str | None = MigrationContext.configure(connection).get_current_revision()
    return revision


def _scripts() -> ScriptDirectory:
    config = current_app.extensions["migrate"].migrate.get_config()
    return ScriptDirectory.from_config(config)


def _describe(revision: str | None) -> str:
    if revision is None:
        return "an empty database"
    script = _scripts().get_revision(revision)
    doc = (script.doc or "").strip() if script is not None else ""
    return f"revision {revision}" + (f" ({doc})" if doc else "")


def upgrade_message(before: str | None, after: str | None, where: str) -> str:
    """Say what `db upgrade` did, in one line."""
    if before == after:
        return f"{where} is already at {_describe(after)}; nothing to do."
    steps = _steps(after, before)
    if before is None:
        return f"Created the schema in {where}: now at {_describe(after)} ({steps})."
    return f"Upgraded {where} from revision {before} to {_describe(after)} ({steps})."


def downgrade_message(before: str | None, after: str | None, where: str) -> str:
    """Say what `db downgrade` did, in one line."""
    if before == after:
        return f"{where} is already at {_describe(after)}; nothing to do."
    steps = _steps(before, after)
    if after is None:
        return f"Downgraded {where} from revision {before} to an empty schema ({steps})."
    return f"Downgraded {where} from revision {before} to {_describe(after)} ({steps})."


def _steps(upper: str | None, lower: str | None) -> str:
    if upper is None:
        return "no migrations"
    count = sum(1 for _ in _scripts().iterate_revisions(upper, lower or "base"))
    return f"{count} migration{'s' if count != 1 else ''}"


def _reporting(command: click.Command, message: Callable[..., str]) -> click.Command:
    """Wrap a Flask-Migrate command so it prints what it changed."""
    original = command.callback
    if original is None:  # pragma: no cover - every Flask-Migrate command has one
        return command

    def callback(**kwargs: Any) -> None:
        if kwargs.get("sql"):
            # Offline mode prints SQL on stdout and touches no database.
            original(**kwargs)
            return
        before = current_revision()
        original(**kwargs)
        after = current_revision()
        where = database_label(str(current_app.config["DATABASE_URL"]))
        click.echo(message(before, after, where))

    return click.Command(
        command.name,
        params=list(command.params),
        callback=with_appcontext(callback),
        help=command.help,
        short_help=command.short_help,
    )


def _build_group() -> click.Group:
    group = click.Group(
        "db",
        params=list(migrate_db.params),
        callback=migrate_db.callback,
        help="Migrate the database schema; `db upgrade` is the one operators run.",
    )
    for name, command in migrate_db.commands.items():
        if name == "upgrade":
            command = _reporting(command, upgrade_message)
        elif name == "downgrade":
            command = _reporting(command, downgrade_message)
        group.add_command(command, name)
    return group


db_group = _build_group()
