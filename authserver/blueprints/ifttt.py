"""IFTTT's user information endpoint."""

from __future__ import annotations

import json
from urllib.parse import quote

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request

from .. import error_formats
from ..logs import note_request
from ..services import tokens as token_service

bp = Blueprint("ifttt", __name__)
error_formats.declare(bp, "ifttt", prefixes=("/ifttt/",))
# Flask's jsonify output (compact, keys sorted, ASCII), without its per-call set-up.
_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode

INVALID_TOKEN = "Invalid or expired access token."  # noqa: S105 - a message, not a secret


def ifttt_error(message: str, status: int) -> Response:
    """Answer in IFTTT's error shape: {"errors": [{"message": ...}]}."""
    response = jsonify(errors=[{"message": message}])
    response.status_code = status
    return response


def user_url(template: str, *, public_id: str, username: str) -> str:
    """Fill AUTHSERVER_USER_URL_TEMPLATE, percent-encoding each value.

    Every reserved character is encoded (RFC 3986 §2.1-2.2), so a username with
    "/", "?", "#" or "%" stays one path segment or query value and cannot change
    the URL's structure; non-ASCII is UTF-8 percent-encoded.
    """
    return template.format(id=quote(public_id, safe=""), username=quote(username, safe=""))


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer`` header (RFC 6750 §2.1), else None."""
    # The scheme is case-insensitive (RFC 7235 §2.1); what follows it is the token.
    parts = (authorization or "").split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


@bp.get("/ifttt/v1/user/info")
def user_info() -> Response:
    """Return the token owner's permanent id, name and optional profile URL."""
    # The header read directly: Authlib's resource protector built a whole OAuth2
    # request object around it on every call (measured in docs/performance.md).
    raw = bearer_token(request.headers.get("Authorization"))
    token = None
    if raw is not None:
        token = token_service.find_active_access_token(raw)
    if token is None:
        # RFC 6750 §3.1 challenge; IFTTT only looks at the 401 and the errors array.
        response = ifttt_error(INVALID_TOKEN, 401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="authserver", error="invalid_token"'
        return response
    note_request(client_id=token.client_id, user_id=token.user_public_id)
    data = {"id": token.user_public_id, "name": token.user_name}
    template = current_app.config["USER_URL_TEMPLATE"]
    if template:
        data["url"] = user_url(template, public_id=token.user_public_id, username=token.username)
    return Response(
        _encode({"data": data}) + "\n",
        headers={"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"},
    )
