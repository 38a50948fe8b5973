"""The one place that reads the wall clock."""

from datetime import UTC
from datetime import datetime


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def epoch(moment: datetime) -> int:
    """Return whole seconds since the Unix epoch for an aware datetime."""
    return int(moment.timestamp())


def format_utc(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC to the second, ending in Z.

    The one format every CLI output, audit detail and page attribute uses.
    """
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
