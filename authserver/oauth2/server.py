"""One Authlib AuthorizationServer per app, and the accessor views use."""

from __future__ import annotations

import logging
import re
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer as _FlaskServer
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749 import UnsupportedGrantTypeError
from flask import Flask
from flask import Response
from flask import current_app
from flask import request as flask_request

from .. import signals
from ..credentials import presented_credentials
from ..limits import get_remote_address
from ..limits import record_client_auth_failure
from ..models import OAuth2Client
from ..services import clients as client_service
from ..services.audit import record_failure_now
from ..services.clients import AuthenticatedClient
from .endpoints import RevocationEndpoint
from .grants import AuthorizationCodeGrant
from .grants import RefreshTokenGrant
from .grants import S256CodeChallenge

EXTENSION_KEY = "authserver.oauth2"
security_log = logging.getLogger("authserver.security")


class AuthorizationServer(_FlaskServer):
    """Authlib's server with our client lookup, error shapes and bookkeeping."""

    def query_client(self, client_id: Any) -> OAuth2Client | None:
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
            if isinstance(oauth_client, AuthenticatedClient):
                client_service.note_secret_use(oauth_client.matched)
        super().send_signal(name, *args, **kwargs)

    def get_authorization_grant(self, request: Any) -> Any:
        """Find the grant; a response_type that cannot be echoed is malformed.

        Authlib quotes an unsupported response_type in error_description, which
        RFC 6749 §5.2 limits to printable ASCII (Authlib raises otherwise).
        """
        if not _describable(request.payload.response_type):
            raise InvalidRequestError("The response_type parameter is malformed.")
        return super().get_authorization_grant(request)

    def get_token_grant(self, request: Any) -> Any:
        """Find the grant; an unprintable or overlong grant_type is not echoed back."""
        if not _describable(request.payload.grant_type):
            raise _UnsupportedGrantTypeError()
        return super().get_token_grant(request)

    def create_oauth2_request(self, request: Any) -> Any:
        """Build Authlib's request, refusing parameters given twice (RFC 6749 §3.1).

        Authlib reads query and body together, so a name in both counts twice too.
        """
        oauth_request = super().create_oauth2_request(request)
        reject_duplicate_parameters()
        return oauth_request

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        """Answer bad client credentials with 401 + WWW-Authenticate, and audit them."""
        if isinstance(error, InvalidClientError):
            error.status_code = 401
            if (error.description or "").startswith(_AUTHLIB_METHODS_MESSAGE):
                # Authlib's wording prints a Python list of every method, "none"
                # included, even to a confidential client: say what went wrong.
                error.description = CLIENT_AUTH_FAILED
            client_id = presented_credentials().claimed_id
            # Counted against the address (and the id it claimed), never against the
            # client itself: its id is public, its secret was not proven.
            address = get_remote_address()
            record_client_auth_failure(address, client_id)
            security_log.warning("client authentication failed client_id=%s", client_id)
            record_failure_now("client.auth_failed", address=address, client_id=client_id)
            signals.client_auth_failed.send()
        response: Response = super().handle_error_response(request, error)
        if isinstance(error, InvalidClientError):
            response.headers["WWW-Authenticate"] = (
                'Basic realm="authserver", error="invalid_client"'
            )
        return response


_AUTHLIB_METHODS_MESSAGE = "The client cannot authenticate with methods"
# One message for an unknown client, a wrong secret and a disabled client, as for
# logins: the answer does not tell which client ids exist.
CLIENT_AUTH_FAILED = (
    "Client authentication failed: the client_id is unknown or disabled, or the "
    "client_secret is wrong. Send the client_id and client_secret of a registered client, "
    "with HTTP Basic or in the form body."
)


def reject_duplicate_parameters() -> None:
    """Refuse a parameter given twice, in the query or body or both (RFC 6749 §3.1).

    :raises DuplicateParameterError: naming the parameter when its name is printable.
    """
    form, args = flask_request.form, flask_request.args
    # Checked per source, then across them: cheaper than merging both into
    # request.values on every introspection and token call.
    for source in (form, args):
        for key, values in source.lists():
            if len(values) > 1:
                raise DuplicateParameterError(key)
    if form and args:
        for key in args:
            if key in form:
                raise DuplicateParameterError(key)


class DuplicateParameterError(InvalidRequestError):
    """A parameter was given more than once (RFC 6749 §3.1)."""

    def __init__(self, key: str) -> None:
        # RFC 6749 §5.2: error_description is printable ASCII without '"' and '\';
        # Authlib refuses anything else, so a hostile name is not echoed.
        named = f"Parameter '{key}'" if _SAFE_NAME.fullmatch(key) else "A parameter"
        super().__init__(f"{named} was given more than once.")


_SAFE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# RFC 6749 §5.2: error_description characters are %x20-21 / %x23-5B / %x5D-7E.
_DESCRIBABLE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{0,64}")


def _describable(value: str | None) -> bool:
    return value is None or _DESCRIBABLE.fullmatch(value) is not None


class _UnsupportedGrantTypeError(UnsupportedGrantTypeError):
    def __init__(self) -> None:
        super().__init__(None)

    def get_error_description(self) -> str:
        return "The grant_type is not supported."


def _malformed_basic() -> InvalidClientError:
    return InvalidClientError(
        status_code=401, description="The Basic authorization header is malformed."
    )


def authenticate_client_secret_basic(query_client: Any, request: Any) -> Any:
    """Authenticate a client by HTTP Basic, refusing contradicting body credentials.

    RFC 6749 §2.3: a client uses one authentication method per request, so a body
    naming another client id or secret than the header is an invalid request.

    :raises InvalidClientError: for a malformed header.
    :raises InvalidRequestError: when the body contradicts the header.
    """
    presented = presented_credentials()
    if presented.malformed_basic:
        raise _malformed_basic()
    if presented.method != "client_secret_basic":
        return None
    for key, body, header in (
        ("client_id", presented.body_client_id, presented.client_id),
        ("client_secret", presented.body_secret, presented.secret),
    ):
        if body not in (None, header):
            raise InvalidRequestError(
                f"The {key} in the body differs from the Authorization header."
            )
    return client_service.authenticate_client(
        presented.client_id or "",
        presented.secret or "",
        generation=getattr(request, "credential_generation", None),
    )


def authenticate_client_secret_post(query_client: Any, request: Any) -> Any:
    """Authenticate a client by client_id and client_secret in the form body (IFTTT)."""
    presented = presented_credentials()
    if presented.method != "client_secret_post":
        return None
    return client_service.authenticate_client(
        presented.client_id or "",
        presented.secret or "",
        generation=getattr(request, "credential_generation", None),
    )


def check_presented_basic() -> None:
    """Refuse a malformed Basic header before anything else reads the request.

    :raises InvalidClientError: 401 for a Basic header that cannot be decoded.
    """
    if presented_credentials().malformed_basic:
        raise _malformed_basic()


def init_oauth2(app: Flask) -> None:
    """Build this app's server, register grants and endpoints, and store it."""
    server = AuthorizationServer()
    server.init_app(app)
    # Both secret methods read the client and its secret in one query (by the
    # secret's digest) instead of loading the mapped client and its secrets.
    server.register_client_auth_method("client_secret_basic", authenticate_client_secret_basic)
    server.register_client_auth_method("client_secret_post", authenticate_client_secret_post)
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_endpoint(RevocationEndpoint)
    app.extensions[EXTENSION_KEY] = server
    # Authlib logs issued tokens at DEBUG; tokens must never reach a log.
    logging.getLogger("authlib").setLevel(logging.INFO)


def authorization_server() -> AuthorizationServer:
    """Return the current app's authorization server."""
    server: AuthorizationServer = current_app.extensions[EXTENSION_KEY]
    return server
