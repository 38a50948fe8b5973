"""Where a shim keeps the trigger identities IFTTT polls with.

IFTTT sends a ``trigger_identity`` with every trigger poll: one per Applet's
trigger (slug plus field values) and user. A shim keeps them to notify IFTTT's
Realtime API about exactly the triggers that have news, and forgets one when IFTTT
says no Applet uses it any more (``DELETE .../trigger_identity/{id}``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import datetime
from typing import Any
from typing import Protocol

__all__ = ["MemoryStore", "TriggerIdentity", "TriggerIdentityStore"]


@dataclass(frozen=True)
class TriggerIdentity:
    """One trigger identity as last polled: whose it is, which trigger, which fields."""

    trigger_identity: str
    slug: str
    user_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    last_polled_at: datetime | None = None


class TriggerIdentityStore(Protocol):
    """What the kit needs from a store; ``MemoryStore`` and ``SQLAlchemyStore`` have it."""

    def remember(self, identity: TriggerIdentity) -> None:
        """Insert or update an identity (the newest poll wins)."""

    def get(self, trigger_identity: str) -> TriggerIdentity | None:
        """Return the identity, if known."""

    def forget(self, trigger_identity: str) -> TriggerIdentity | None:
        """Remove an identity; return what was removed."""

    def find(self, *, user_id: str | None = None, slug: str | None = None) -> list[TriggerIdentity]:
        """Return the identities of a user and/or trigger."""


class MemoryStore:
    """The default store: a dict in process memory (lost on restart, one process only)."""

    def __init__(self) -> None:
        self._identities: dict[str, TriggerIdentity] = {}
        self._lock = threading.Lock()

    def remember(self, identity: TriggerIdentity) -> None:
        """Insert or update an identity."""
        with self._lock:
            self._identities[identity.trigger_identity] = replace(
                identity, fields=dict(identity.fields)
            )

    def get(self, trigger_identity: str) -> TriggerIdentity | None:
        """Return the identity, if known."""
        with self._lock:
            return self._identities.get(trigger_identity)

    def forget(self, trigger_identity: str) -> TriggerIdentity | None:
        """Remove an identity; return what was removed."""
        with self._lock:
            return self._identities.pop(trigger_identity, None)

    def find(self, *, user_id: str | None = None, slug: str | None = None) -> list[TriggerIdentity]:
        """Return the identities of a user and/or trigger."""
        with self._lock:
            return [
                identity
                for identity in self._identities.values()
                if (user_id is None or identity.user_id == user_id)
                and (slug is None or identity.slug == slug)
            ]
