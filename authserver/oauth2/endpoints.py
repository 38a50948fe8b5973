"""RFC 7009 revocation and RFC 7662 introspection endpoints on Authlib."""

from __future__ import annotations

from typing import Any

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidRequestError
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


class RevocationEndpoint(_RevocationEndpoint):
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


class IntrospectionEndpoint(_IntrospectionEndpoint):
    """RFC 7662 for resource servers (shims) and for clients' own tokens."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def authenticate_endpoint_client(self, request: Any) -> OAuth2Client | ResourceServer:
        """Accept a resource server or a confidential client, Basic or form body.

        :raises InvalidClientError: 401 for missing or wrong credentials.
        """
        # Imported here: server.py imports this module to register the endpoints.
        from .server import basic_credentials

        caller_id, secret = basic_credentials(request.headers)
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

    def check_params(self, request: Any, client: OAuth2Client | ResourceServer) -> None:
        """Require ``token``; ignore the hint (only access tokens are looked up).

        :raises InvalidRequestError: 400 when ``token`` is missing.
        """
        # RFC 7662 §2.1: the hint is advisory, so an unknown one is no error either.
        if "token" not in request.form:
            raise InvalidRequestError(description="Missing 'token' parameter.")

    def query_token(
        self, token_string: str, token_type_hint: str | None
    ) -> AccessToken | None:
        """Look a usable access token up by its digest (one indexed lookup).

        Refresh tokens are never reported active: they authorize no call, and a shim
        that only reads ``active`` must not accept one as a bearer token.
        """
        return token_service.find_usable_access_token(token_string)

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
        # RFC 7662 §2.2: unknown, expired, revoked or not the caller's: nothing else.
        return {"active": False}
