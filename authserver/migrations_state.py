"""Compare the database's Alembic revision with the newest one we ship."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .database import db


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


def database_state() -> DatabaseState:
    """Probe the database (one short query) and compare revisions."""
    directory = current_app.extensions["migrate"].directory
    head = current_app.extensions.setdefault(
        "authserver.head_revision", head_revision(str(Path(directory)))
    )
    try:
        current = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        db.session.rollback()
        return DatabaseState(False, None, "database unreachable or not initialised")
    finally:
        db.session.remove()
    if current != head:
        return DatabaseState(False, current, f"schema at {current}, expected {head}")
    return DatabaseState(True, current)
