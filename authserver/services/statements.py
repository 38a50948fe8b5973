"""Helpers for the token modules' prebuilt Core statements."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy import bindparam


def table(model: Any) -> Table:
    """Return a model's Table (typed as such), for plain Core statements."""
    found: Table = model.__table__
    return found


def typed(name: str, column: Any) -> Any:
    """Return a bind parameter of ``column``'s type (psycopg casts it: a NULL is typed)."""
    return bindparam(name, type_=column.type)
