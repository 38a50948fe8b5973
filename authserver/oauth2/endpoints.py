"""RFC 7009 revocation on Authlib."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint

from ..models import AccessToken
from ..models import RefreshToken
from ..services import clients as client_service
from ..services import revocation as revocation_service
from ..services.clients import AuthenticatedClient
from ..services.interfaces import ClientRules
from .grants import AUTH_METHODS

Token = AccessToken | RefreshToken


def _token_client_id(token: Token) -> int:
    return token.family.oauth_client_id


class RevocationEndpoint(_RevocationEndpoint):
    """RFC 7009: clients revoke their own access or refresh tokens."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def authenticate_endpoint_client(self, request: Any) -> Any:
        """Authenticate the client and note which secret it used.

        The token endpoint notes it through Authlib's after_authenticate_client
        signal, which endpoints do not send: a client still revoking with its
        previous secret during an overlap must show up like any other use.
        """
        oauth_client = super().authenticate_endpoint_client(request)
        if isinstance(oauth_client, AuthenticatedClient):
            client_service.note_secret_use(oauth_client.matched)
        return oauth_client

    def authenticate_token(self, request: Any, client: ClientRules) -> Token | None:
        """Find the token; another client's token is ignored, not revealed."""
        self.check_params(request, client)
        raw = request.form["token"]
        if len(raw) > 512:
            return None
        token = revocation_service.find_token(raw, request.form.get("token_type_hint"))
        # RFC 7009 §2.2: the answer is 200 whether or not the token was valid, so a
        # client cannot probe for other clients' tokens.
        if token is None or _token_client_id(token) != client.id:
            return None
        return token

    def revoke_token(self, token: Token, request: Any) -> None:
        """Revoke through the token service."""
        revocation_service.revoke_token(token)
