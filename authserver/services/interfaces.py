"""What the services require of the objects the edges hand them."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol


class ClientRules(Protocol):
    """What the token services read of an OAuth client, whichever object carries it.

    The token endpoint hands them ``services.clients.AuthenticatedClient`` (read with
    its secret in one Core query); the authorization endpoint, the CLI and the shim
    hand them the ``OAuth2Client`` row. Both satisfy this, as mypy checks in
    services/clients.py. Read-only: no service writes to the client it was given.
    """

    @property
    def id(self) -> int:
        """The client's primary key (families and codes reference it)."""

    @property
    def client_id(self) -> str:
        """The public client identifier (logged, never a key of ours)."""

    @property
    def scopes(self) -> list[str]:
        """The scopes the client holds now (an admin may have narrowed them)."""

    @property
    def is_confidential(self) -> bool:
        """Whether the client authenticates with a secret."""

    @property
    def refresh_profile(self) -> str | None:
        """The refresh profile (services/policies.py), None for the default."""

    @property
    def refresh_rotation(self) -> bool | None:
        """The rotation override, None for the profile's."""

    @property
    def refresh_grace_lifetime(self) -> int | None:
        """The grace override in seconds, None for the profile's."""

    @property
    def refresh_grace_until_used(self) -> bool | None:
        """Whether the grace lasts until the successor is first used."""

    @property
    def refresh_reuse_revokes_family(self) -> bool | None:
        """The reuse override, None for the profile's."""

    def access_lifetime(self, default_seconds: int) -> timedelta | None:
        """Return the access-token lifetime, or None when tokens never expire."""
