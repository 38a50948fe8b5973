"""Compare the database's Alembic revision with the newest one we ship."""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from . import resource_dir
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
    """Return the head revision id of the migrations in ``directory``.

    /readyz runs in every serving worker, where importing Alembic (and Mako with it)
    would cost each worker about 11 MB of memory; so this reads the two assignments
    Alembic itself reads from each version file. tests/migrations checks that it
    agrees with Alembic's ScriptDirectory.

    :raises ValueError: when the files do not form a single head.
    """
    revisions: dict[str, object] = {}
    for path in sorted(Path(directory, "versions").glob("*.py")):
        names: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign):
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                names[target.id] = ast.literal_eval(value)
        if isinstance(names.get("revision"), str):
            revisions[str(names["revision"])] = names.get("down_revision")
    parents: set[object] = set()
    for down in revisions.values():
        parents.update(down if isinstance(down, tuple | list) else (down,))
    heads = [rev for rev in revisions if rev not in parents]
    if len(heads) > 1:
        raise ValueError(f"several migration heads: {sorted(heads)}")
    return heads[0] if heads else None


def _shipped_head() -> str | None:
    # The migrations folder never changes while the process runs: read it once.
    extensions = current_app.extensions
    if _HEAD_KEY not in extensions:
        extensions[_HEAD_KEY] = head_revision(resource_dir("migrations"))
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
            current = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            return DatabaseState(False, None, f"database not migrated, expected {head}")
    finally:
        db.session.remove()
    if current != head:
        return DatabaseState(False, current, f"schema at {current}, expected {head}")
    return DatabaseState(True, current)
