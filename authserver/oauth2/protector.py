"""Bearer-token protection (RFC 6750) for our own resource endpoints."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc6750 import InvalidTokenError

from ..clock import utcnow
from ..models import AccessToken
from ..services import tokens as token_service


class AccessTokenValidator(BearerTokenValidator):
    """Validate opaque access tokens by their digest."""

    def authenticate_token(self, token_string: str) -> AccessToken | None:
        """Find the access token (None for unknown)."""
        return token_service.find_usable_access_token(token_string)

    def validate_token(self, token: AccessToken | None, scopes: Any, request: Any) -> None:
        """Refuse unknown, expired, revoked and disabled-owner tokens alike."""
        if token is None or not token.is_usable(utcnow()):
            raise InvalidTokenError()


def make_protector() -> ResourceProtector:
    """Return a protector that accepts our access tokens."""
    protector = ResourceProtector()
    protector.register_token_validator(AccessTokenValidator())
    return protector
