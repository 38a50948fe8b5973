"""RFC 7009 revocation and RFC 7662 introspection endpoints on Authlib."""

from __future__ import annotations

from typing import Any

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from flask import current_app

from ..models import AccessToken
from ..models import OAuth2Client
from ..models import RefreshToken
from ..models import ResourceServer
from ..services import clients as client_service
from ..services import tokens as token_service
from .grants import AUTH_METHODS

Token = AccessToken | RefreshToken


def _token_client_id(token: Token) -> int:
    return token.family.oauth_client_id


class RevocationEndpoint(_RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009: clients revoke their own access or refresh tokens."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def authenticate_token(self, request: Any, client: OAuth2Client) -> Token | None:
        """Find the token; another client's token is ignored, not revealed."""
        self.check_params(request, client)
        raw = request.form["token"]
        if len(raw) > 512:
            return None
        token = token_service.find_token(raw, request.form.get("token_type_hint"))
        # RFC 7009 §2.2: the answer is 200 whether or not the token was valid, so a
        # client cannot probe for other clients' tokens.
        if token is None or _token_client_id(token) != client.id:
            return None
        return token

    def revoke_token(self, token: Token, request: Any) -> None:
        """Revoke through the token service."""
        token_service.revoke_token(token, oauth_client=request.client)


class IntrospectionEndpoint(_IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662 for resource servers (shims) and for clients' own tokens."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def authenticate_endpoint_client(self, request: Any) -> OAuth2Client | ResourceServer:
        """Accept a resource server or a confidential client, Basic or form body.

        :raises InvalidClientError: 401 for missing or wrong credentials.
        """
        caller_id, secret = extract_basic_authorization(request.headers)
        if not caller_id:
            caller_id = request.form.get("client_id")
            secret = request.form.get("client_secret")
        caller: OAuth2Client | ResourceServer | None = None
        if caller_id and secret:
            caller = client_service.get_resource_server(caller_id)
            if caller is None:
                caller = client_service.get_client(caller_id)
        if caller is None or not secret or not caller.check_client_secret(secret):
            raise InvalidClientError(
                status_code=401, description="Resource server authentication failed."
            )
        client_service.record_secret_use(caller, owner_id=caller_id)
        request.client = caller
        return caller

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        """Look the token up by its digest."""
        if len(token_string) > 512:
            return None
        return token_service.find_token(token_string, token_type_hint)

    def check_permission(
        self, token: Token, client: OAuth2Client | ResourceServer, request: Any
    ) -> bool:
        """Resource servers see every token; a client sees only its own."""
        if isinstance(client, ResourceServer):
            return True
        return _token_client_id(token) == client.id

    def create_endpoint_response(self, request: Any) -> tuple[int, dict[str, Any], Any]:
        """Answer exactly {"active": false} for anything not active."""
        client = self.authenticate_endpoint_client(request)
        token = self.authenticate_token(request, client)
        return 200, self.create_introspection_payload(token), default_json_headers

    def create_introspection_payload(self, token: Token | None) -> dict[str, Any]:
        """Build the RFC 7662 body."""
        from ..clock import utcnow

        issuer = current_app.config["ISSUER"]
        if isinstance(token, AccessToken) and token.is_usable(utcnow()):
            return token.to_introspection(issuer)
        if isinstance(token, RefreshToken) and token_service.refresh_token_is_active(token):
            family = token.family
            return {
                "active": True,
                "sub": family.user.public_id,
                "username": family.user.username,
                "client_id": family.oauth_client.client_id,
                "scope": family.scope,
                "token_type": "refresh_token",
                "iat": int(token.issued_at.timestamp()),
                "iss": issuer,
            }
        return {"active": False}
