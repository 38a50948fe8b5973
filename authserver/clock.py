"""The one place that reads the wall clock."""

from datetime import UTC
from datetime import datetime


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def epoch(moment: datetime) -> int:
    """Return whole seconds since the Unix epoch for an aware datetime."""
    return int(moment.timestamp())
