"""Test tokens for shims: ``POST /shim/test-token`` (IFTTT's test/setup, over HTTP)."""

from __future__ import annotations

import json
import logging

from authlib.consts import default_json_headers
from authlib.oauth2 import OAuth2Error
from flask import Blueprint
from flask import Response

from .. import error_formats
from ..extensions import csrf
from ..limits import refused_for_client_auth_failures
from ..logs import note_request
from ..oauth2.introspection import authenticate_caller
from ..oauth2.server import authorization_server
from ..oauth2.server import reject_duplicate_parameters
from ..services import shim_test_tokens as test_token_service

bp = Blueprint("shim", __name__)
error_formats.declare(bp, "json", prefixes=("/shim/",))
log = logging.getLogger(__name__)


@bp.post("/shim/test-token")
@csrf.exempt
def test_token() -> Response:
    """Mint an access token for the test user an admin allowed this shim."""
    limited = refused_for_client_auth_failures()
    if limited is not None:
        return limited
    try:
        reject_duplicate_parameters()
        # The same authentication as introspection, credential cache included.
        caller = authenticate_caller()
        note_request(client_id=caller.owner_id)
        try:
            body = test_token_service.issue_test_token(caller)
        except test_token_service.MintRefusedError as refused:
            log.warning("test token refused for %s", caller.owner_id)
            # RFC 6749 §5.2 names the error; 403 because the caller is known but not allowed.
            raise OAuth2Error(
                description=refused.message, status_code=403, error="unauthorized_client"
            ) from None
    except OAuth2Error as error:
        return authorization_server().handle_error_response(None, error)
    note_request(user_id=body["sub"])
    return Response(json.dumps(body), 200, default_json_headers)
