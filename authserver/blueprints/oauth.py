"""OAuth 2.0 endpoints: authorize, token, revoke, introspect, and RFC 8414 metadata."""

from __future__ import annotations

import json
import logging

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_babel import gettext
from flask_login import current_user

from .. import error_formats
from ..credentials import presented_credentials
from ..extensions import csrf
from ..forms import ConsentForm
from ..limits import introspection_exceeded
from ..limits import refused_for_client_auth_failures
from ..limits import too_many
from ..logs import note_request
from ..oauth2 import introspection
from ..oauth2.grants import AUTH_METHODS
from ..oauth2.server import DuplicateParameterError
from ..oauth2.server import authorization_server
from ..services import consents as consent_service

bp = Blueprint("oauth", __name__)
# Machines call every endpoint here except authorize, which a browser opens.
error_formats.declare(
    bp,
    "json",
    prefixes=("/oauth/", "/.well-known/"),
    page_endpoints={"oauth.authorize": "/oauth/authorize"},
)
log = logging.getLogger(__name__)


def _error_page(error: OAuth2Error) -> tuple[str, int]:
    # RFC 6749 §4.1.2.1: with an unknown client or redirect URI the server MUST NOT
    # redirect; the user sees the problem instead.
    return (
        render_template(
            "oauth/error.html",
            error=error.error,
            description=error.description or gettext("The request could not be processed."),
        ),
        400,
    )


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize() -> Response | tuple[str, int] | str:
    """Validate the request, log the user in, ask consent, redirect with a code."""
    server = authorization_server()
    end_user = current_user if current_user.is_authenticated else None
    try:
        grant = server.get_consent_grant(end_user=end_user)
    except OAuth2Error as error:
        if getattr(error, "redirect_uri", None):
            # The client and redirect URI are verified: errors go back to the client.
            return server.handle_error_response(None, error)
        return _error_page(error)
    note_request(
        client_id=grant.client.client_id,
        user_id=end_user.public_id if end_user is not None else None,
    )
    if end_user is None:
        return redirect(url_for("auth.login", next=request.full_path))  # type: ignore[return-value]

    oauth_client = grant.client
    scope = grant.request.scope or ""
    form = ConsentForm()
    if request.method == "GET":
        if consent_service.has_consent(end_user, oauth_client, scope):
            return server.create_authorization_response(grant=grant, grant_user=end_user)  # type: ignore[no-any-return]
        return render_template(
            "oauth/consent.html",
            form=form,
            oauth_client=oauth_client,
            scopes=scope.split(),
            user=end_user,
            action=request.full_path,
            switch_url=url_for("auth.login", next=request.full_path, switch=1),
        )
    if not form.validate_on_submit():
        return _error_page(
            OAuth2Error(description=gettext("The form expired. Please start again."))
        )
    decision = request.form.get("decision")
    if decision == "allow":
        consent_service.grant_consent(end_user, oauth_client, scope)
        return server.create_authorization_response(grant=grant, grant_user=end_user)  # type: ignore[no-any-return]
    if decision == "deny":
        # RFC 6749 §4.1.2.1: access_denied with the same state.
        return server.create_authorization_response(grant=grant, grant_user=None)  # type: ignore[no-any-return]
    return _error_page(OAuth2Error(description=gettext("Choose Allow or Deny.")))


@bp.post("/oauth/token")
@csrf.exempt
def token() -> Response:
    """Exchange a code or refresh token (RFC 6749 §3.2)."""
    refused = refused_for_client_auth_failures()
    if refused is not None:
        _note_presented_client()
        return refused
    server = authorization_server()
    try:
        response: Response = server.create_token_response()
    except DuplicateParameterError as error:
        response = server.handle_error_response(None, error)
    _note_presented_client()
    return response


def _note_presented_client() -> None:
    """Name the presented client in the log when no grant owner was noted."""
    if not g.get("log_client_id"):
        claimed = presented_credentials().claimed_id
        if claimed:
            note_request(client_id=claimed)


@bp.post("/oauth/revoke")
@csrf.exempt
def revoke() -> Response:
    """RFC 7009 token revocation."""
    refused = refused_for_client_auth_failures()
    if refused is not None:
        return refused
    server = authorization_server()
    try:
        response: Response = server.create_endpoint_response("revocation")
    except DuplicateParameterError as error:
        response = server.handle_error_response(None, error)
    return response


@bp.post("/oauth/introspect")
@csrf.exempt
def introspect() -> Response:
    """RFC 7662 token introspection for resource servers (the shims' hot path)."""
    # The log names the caller (the resource server), refused or not; introspect()
    # notes the token's owner.
    _note_presented_client()
    refused = refused_for_client_auth_failures()
    if refused is not None:
        return refused
    try:
        caller, token = introspection.authenticate_introspection_caller()
        # The quota is the authenticated caller's: calls that only claim its id
        # spend their address's failure budget instead.
        wait = introspection_exceeded(f"{caller.owner_kind}:{caller.owner_id}")
        if wait:
            return too_many(wait)
        body = introspection.introspect(caller, token)
    except OAuth2Error as error:
        return authorization_server().handle_error_response(None, error)
    return Response(json.dumps(body), 200, default_json_headers)


@bp.get("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    """RFC 8414 authorization server metadata."""
    issuer = current_app.config["ISSUER"].rstrip("/")
    body = {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/oauth/authorize",
        "token_endpoint": issuer + "/oauth/token",
        "revocation_endpoint": issuer + "/oauth/revoke",
        "introspection_endpoint": issuer + "/oauth/introspect",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": introspection.AUTH_METHODS,
        "scopes_supported": str(current_app.config["SCOPES_SUPPORTED"]).split(),
        "code_challenge_methods_supported": ["S256"],
    }
    response = jsonify(body)
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
