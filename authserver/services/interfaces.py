"""What the services require of the objects the edges hand them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from typing import Protocol

from ..models import TokenPolicy


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

    def token_policy(self, settings: Mapping[str, Any]) -> TokenPolicy:
        """Return the client's refresh policy under these server-wide settings."""
