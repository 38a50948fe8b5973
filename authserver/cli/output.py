"""Output helpers shared by the commands: JSON documents, tables, durations."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from functools import wraps
from typing import Any
from typing import TypeVar

import click
from flask import current_app
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import SQLAlchemyError

from ..clock import format_utc
from ..errors import AuthServerError
from ..logs import escape_controls

F = TypeVar("F", bound=Callable[..., Any])

_DURATION = re.compile(r"^(\d{1,9})([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Ten years: longer makes no sense for an overlap or lifetime, and far larger values
# would overflow datetime arithmetic (a traceback instead of an answer).
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """Parse '90s', '15m', '24h', '7d' or '0' into a timedelta.

    :raises click.BadParameter: for anything else (negative values included).
    """
    text = text.strip()
    match = _DURATION.match(text)
    if not match:
        if _DURATION.match(text[1:]) and text.startswith("-"):
            raise click.BadParameter(f"{text!r} is negative; durations must be 0 or more")
        raise click.BadParameter(
            f"{text!r} is not a duration; use a number with s, m, h or d (e.g. 90s, 24h, 7d)"
        )
    value = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if value > MAX_DURATION:
        raise click.BadParameter(f"{text!r} is too long; at most {MAX_DURATION.days}d")
    return value


class DurationError(click.ClickException):
    """A bad duration option: one line on stderr, exit status 2 (like usage errors)."""

    exit_code = 2


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A click parameter type for durations."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        """Convert the option value.

        :raises DurationError: not click's usage error, which would print the usage
            and a hint around the message; one line names the option and the problem.
        """
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except click.BadParameter as error:
            label = param.opts[0] if param is not None and param.opts else "duration"
            raise DurationError(f"invalid value for {label}: {error.message}") from None


def iso(moment: datetime | None) -> str | None:
    """Format an aware datetime as ISO 8601 UTC with a Z."""
    if moment is None:
        return None
    return format_utc(moment)


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)")


def iso_text(value: Any) -> Any:
    """Rewrite a stored ISO 8601 timestamp string in our one format (Z); else as is."""
    if isinstance(value, str) and _TIMESTAMP.fullmatch(value):
        return format_utc(datetime.fromisoformat(value))
    return value


def human(value: Any) -> str:
    """Render a value for a table or key/value line: no None, True or Python lists."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(human(item) for item in value) if value else "-"
    if isinstance(value, datetime):
        return format_utc(value)
    return str(iso_text(value))


def seconds_text(seconds: int | None, *, default: int | None = None) -> str:
    """Render a lifetime in whole seconds for people ("1h", "90s", "never expires")."""
    if seconds is None:
        return f"{seconds_text(default)} (server default)" if default is not None else "-"
    if seconds == 0:
        return "0 (never expires)"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def emit_json(document: Any) -> None:
    """Print exactly one JSON document on stdout."""
    click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a plain aligned table for humans."""
    # Cells may hold what anyone typed (a username in a failed login): escaped, so a
    # terminal never receives raw control characters.
    cells = [[("" if v is None else escape_controls(human(v))) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        click.echo("(none)")


def database_label(url: str | None) -> str:
    """Render a database URL for messages, with any password masked."""
    if not url:
        return "the database"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "the database"


# What drivers say when the schema is missing: SQLite, then PostgreSQL.
_NOT_MIGRATED = ("no such table", "does not exist")


def describe_database_error(error: SQLAlchemyError, url: str | None = None) -> str:
    """Say in one line what went wrong with the database and what to do.

    Never the SQL or its parameters (they may hold hashes or names), only the
    driver's first line.
    """
    where = database_label(url)
    if isinstance(error, DBAPIError):
        lines = str(error.orig).strip().splitlines()
        detail = lines[0] if lines else type(error.orig).__name__
        # psycopg prefixes connection failures; the server's reason is what helps.
        detail = re.sub(r"^connection failed: ", "", detail)
        detail = re.sub(r"^.*?FATAL:\s+", "", detail)
        if error.statement is None or _is_connection_error(error):
            hint = (
                "its folder must exist and be writable"
                if where.startswith("sqlite")
                else "is the server running, and does the database exist?"
            )
            return f"cannot connect to {where}: {detail} (check AUTHSERVER_DATABASE_URL: {hint})"
        if any(marker in detail for marker in _NOT_MIGRATED):
            return (
                f"database error: {detail}; {where} is not migrated (run `authserver db upgrade`)"
            )
        return (
            f"database error: {detail} ({where}; check AUTHSERVER_DATABASE_URL and run "
            "`authserver db upgrade`)"
        )
    return f"database error: {error} ({where}; check AUTHSERVER_DATABASE_URL)"


def _is_connection_error(error: DBAPIError) -> bool:
    text = str(error.orig)
    return error.connection_invalidated or any(
        marker in text
        for marker in (
            "connection failed",
            "failed to resolve host",
            "unable to open database file",
            "Connection refused",
            "could not connect",
            "timeout expired",
        )
    )


def domain_errors(func: F) -> F:
    """Turn domain and database errors into one clear line on stderr and exit status 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AuthServerError as error:
            raise click.ClickException(error.message) from None
        except SQLAlchemyError as error:
            # The usual first-run mistakes (database down, `db upgrade` not yet run)
            # deserve one line, not a driver traceback.
            url = current_app.config.get("DATABASE_URL") if current_app else None
            raise click.ClickException(describe_database_error(error, url)) from None

    return wrapper  # type: ignore[return-value]


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
