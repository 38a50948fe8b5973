"""Bearer-token protection (RFC 6750) for our own resource endpoints."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc6750 import InvalidTokenError

from ..database import read_without_transaction
from ..services import tokens as token_service
from ..services.tokens import ActiveAccessToken


class AccessTokenValidator(BearerTokenValidator):
    """Validate opaque access tokens by their digest."""

    def authenticate_token(self, token_string: str) -> ActiveAccessToken | None:
        """Find the access token if it is usable now (None otherwise)."""
        read_without_transaction()
        return token_service.find_active_access_token(token_string)

    def validate_token(self, token: ActiveAccessToken | None, scopes: Any, request: Any) -> None:
        """Refuse unknown, expired, revoked and disabled-owner tokens alike."""
        if token is None:
            raise InvalidTokenError()


def make_protector() -> ResourceProtector:
    """Return a protector that accepts our access tokens."""
    protector = ResourceProtector()
    protector.register_token_validator(AccessTokenValidator())
    return protector
