"""One Authlib AuthorizationServer per app, and the accessor views use."""

from __future__ import annotations

import logging
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer as _FlaskServer
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Flask
from flask import Response
from flask import current_app
from flask import request as flask_request

from ..models import OAuth2Client
from ..services import clients as client_service
from ..services.audit import record_event_now
from .endpoints import IntrospectionEndpoint
from .endpoints import RevocationEndpoint
from .grants import AuthorizationCodeGrant
from .grants import RefreshTokenGrant
from .grants import S256CodeChallenge

EXTENSION_KEY = "authserver.oauth2"
security_log = logging.getLogger("authserver.security")


class AuthorizationServer(_FlaskServer):  # type: ignore[misc]
    """Authlib's server with our client lookup, error shapes and bookkeeping."""

    def query_client(self, client_id: str) -> OAuth2Client | None:
        """Return an enabled client; disabled ones do not exist for OAuth."""
        if not isinstance(client_id, str):
            return None
        oauth_client = client_service.get_client(client_id)
        if oauth_client is None or oauth_client.disabled:
            return None
        return oauth_client

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Never called: our grants issue and store tokens through the token service."""
        raise NotImplementedError

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Record which secret authenticated the client (old-secret use is audited)."""
        if name == "after_authenticate_client":
            oauth_client = kwargs.get("client")
            if isinstance(oauth_client, OAuth2Client):
                client_service.record_secret_use(oauth_client, owner_id=oauth_client.client_id)
        super().send_signal(name, *args, **kwargs)

    def create_oauth2_request(self, request: Any) -> Any:
        """Build Authlib's request, refusing parameters given twice (RFC 6749 §3.1)."""
        oauth_request = super().create_oauth2_request(request)
        for key, values in flask_request.form.lists():
            if len(values) > 1:
                raise _DuplicateParameter(key)
        if flask_request.method == "GET" or flask_request.path.endswith("/authorize"):
            for key, values in flask_request.args.lists():
                if len(values) > 1:
                    raise _DuplicateParameter(key)
        return oauth_request

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        """Answer bad client credentials with 401 + WWW-Authenticate, and audit them."""
        if isinstance(error, InvalidClientError):
            error.status_code = 401
            client_id = _presented_client_id()
            security_log.warning("client authentication failed client_id=%s", client_id)
            record_event_now("client.auth_failed", client_id=client_id)
            metrics_hook = current_app.extensions.get("authserver.count")
            if metrics_hook is not None:
                metrics_hook("client_auth_failed")
        response: Response = super().handle_error_response(request, error)
        if isinstance(error, InvalidClientError):
            response.headers["WWW-Authenticate"] = 'Basic realm="authserver", error="invalid_client"'
        return response


class _DuplicateParameter(InvalidRequestError):  # type: ignore[misc]
    def __init__(self, key: str) -> None:
        super().__init__(f"Parameter {key!r} was given more than once.")


def _presented_client_id() -> str | None:
    from authlib.oauth2.rfc6749.util import extract_basic_authorization

    client_id, _ = extract_basic_authorization(flask_request.headers)
    client_id = client_id or flask_request.form.get("client_id")
    if client_id is None or len(client_id) > 64:
        return None
    return str(client_id)


def init_oauth2(app: Flask) -> None:
    """Build this app's server, register grants and endpoints, and store it."""
    server = AuthorizationServer()
    server.init_app(app)
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(IntrospectionEndpoint)
    app.extensions[EXTENSION_KEY] = server
    # Authlib logs issued tokens at DEBUG; tokens must never reach a log.
    logging.getLogger("authlib").setLevel(logging.INFO)


def authorization_server() -> AuthorizationServer:
    """Return the current app's authorization server."""
    server: AuthorizationServer = current_app.extensions[EXTENSION_KEY]
    return server


def handle_duplicate(error: OAuth2Error) -> Response:
    """Turn a duplicate-parameter error raised while parsing into a JSON answer."""
    return authorization_server().handle_error_response(None, error)


DuplicateParameter = _DuplicateParameter
