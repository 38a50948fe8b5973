"""RFC 7662 token introspection: the shims' hot path.

Shims call it once per request they serve, so it reads only plain rows: one query
authenticates the caller, one finds the token with every usability rule. Authlib's
IntrospectionEndpoint would add a request object and a dispatch per call while every
method that matters here is ours, so the endpoint is this module instead.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidRequestError
from flask import current_app
from flask import request

from ..credentials import presented_credentials
from ..database import read_connection
from ..database import statements_are_round_trips
from ..logs import note_request
from ..services import clients as client_service
from ..services import tokens as token_service
from ..services.clients import SecretMatch
from ..services.tokens import ActiveAccessToken
from .server import check_presented_basic
from .server import reject_duplicate_parameters

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
INACTIVE: dict[str, Any] = {"active": False}


def authenticate_caller(*, generation: int | None = None) -> SecretMatch:
    """Accept a resource server or a confidential client, Basic or form body.

    ``generation``: the credential generation, if just read (see match_secret).

    :raises InvalidClientError: 401 for missing, malformed or wrong credentials.
    """
    check_presented_basic()
    presented = presented_credentials()
    caller = client_service.match_secret(
        presented.client_id or "", presented.secret or "", generation=generation
    )
    if caller is None:
        raise InvalidClientError(
            status_code=401, description="Resource server authentication failed."
        )
    client_service.note_secret_use(caller)
    return caller


def authenticate_introspection_caller() -> tuple[SecretMatch, ActiveAccessToken | None]:
    """Refuse repeated parameters, then authenticate the caller on the read-only path.

    Returns the caller and the presented token if usable. The token is read first,
    in the same query as the credential generation the caller's cached secret is
    checked against: on PostgreSQL, one round trip for the whole call. A refused
    caller (wrong secret, over its quota) learns nothing of that read.

    :raises InvalidClientError: 401 for missing, malformed or wrong credentials.
    :raises InvalidRequestError: 400 for a repeated parameter.
    """
    reject_duplicate_parameters()
    raw = request.form.get("token")
    # One lent connection for every read of the call (no ORM session unless a
    # secret's last use is written); autocommit on PostgreSQL.
    with read_connection():
        if raw is None:
            # introspect() answers 400, once the caller is authenticated.
            return authenticate_caller(), None
        if not statements_are_round_trips():
            # SQLite: the separate reads cost fewer instructions than the merged one.
            caller = authenticate_caller()
            return caller, token_service.find_active_access_token(raw)
        generation, token = token_service.find_active_access_token_with_generation(raw)
        return authenticate_caller(generation=generation), token


def introspect(caller: SecretMatch, token: ActiveAccessToken | None) -> dict[str, Any]:
    """Answer one introspection request of an authenticated caller (RFC 7662 §2.2 body).

    ``token`` is the presented token as authenticate_introspection_caller read it.
    Refresh tokens are never reported active: they authorize no call, and a shim
    that only reads ``active`` must not accept one as a bearer token.

    :raises InvalidRequestError: 400 for a missing ``token``.
    """
    # RFC 7662 §2.1: token_type_hint is advisory, so an unknown one is no error.
    if request.form.get("token") is None:
        raise InvalidRequestError(description="Missing 'token' parameter.")
    # A resource server sees every token; a client sees only its own.
    if token is None or (
        caller.owner_kind == "client" and token.oauth_client_pk != caller.owner_pk
    ):
        # RFC 7662 §2.2: unknown, expired, revoked or not the caller's: nothing else.
        return INACTIVE
    note_request(user_id=token.user_public_id)
    return token.introspection(current_app.config["ISSUER"])
