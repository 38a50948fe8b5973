"""Compare the database's Alembic revision with the newest one we ship."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from alembic.config import Config
from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .database import db

log = logging.getLogger(__name__)

_HEAD_KEY = "authserver.head_revision"


@dataclass(frozen=True)
class DatabaseState:
    """Whether the database is reachable and migrated."""

    ready: bool
    current: str | None
    reason: str | None = None


def head_revision(directory: str) -> str | None:
    """Return the head revision id of the migrations in ``directory``."""
    config = Config()
    config.set_main_option("script_location", directory)
    return ScriptDirectory.from_config(config).get_current_head()


def _shipped_head() -> str | None:
    # The migrations folder never changes while the process runs: read it once.
    extensions = current_app.extensions
    if _HEAD_KEY not in extensions:
        extensions[_HEAD_KEY] = head_revision(str(extensions["migrate"].directory))
    head: str | None = extensions[_HEAD_KEY]
    return head


def database_state() -> DatabaseState:
    """Probe the database (two short queries) and compare revisions.

    The reasons are fixed phrases plus revision ids: /readyz is public, so driver
    messages (host names, user names) never reach it; they go to the log instead.
    """
    head = _shipped_head()
    try:
        try:
            db.session.execute(text("SELECT 1"))
        except SQLAlchemyError as error:
            log.warning("readiness: database unreachable: %s", type(error).__name__)
            return DatabaseState(False, None, "database unreachable")
        try:
            current = db.session.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalar()
        except SQLAlchemyError:
            return DatabaseState(False, None, f"database not migrated, expected {head}")
    finally:
        db.session.remove()
    if current != head:
        return DatabaseState(False, current, f"schema at {current}, expected {head}")
    return DatabaseState(True, current)
