"""Test tokens for IFTTT's endpoint tests, minted over HTTP for an allowed shim.

IFTTT calls a shim's ``/ifttt/v1/test/setup`` before every endpoint-test run and
needs a real access token of a test user. An admin allows one resource server to
mint such tokens for one user through one client; every call then adds an access
token to the same family, so a test run a day for a year leaves one grant.
"""

from __future__ import annotations

import logging
from typing import Any
from typing import NoReturn

from sqlalchemy import select

from ..clock import utcnow
from ..database import db
from ..errors import AuthServerError
from ..errors import ValidationError
from ..models import OAuth2Client
from ..models import ShimTestPermission
from ..models import TokenFamily
from ..models import User
from . import clients as client_service
from . import revocation as revocation_service
from . import tokens as token_service
from . import users as user_service
from .audit import record_event
from .audit import record_event_now
from .clients import SecretMatch

log = logging.getLogger(__name__)


class MintRefusedError(AuthServerError):
    """The caller may not mint test tokens (OAuth ``unauthorized_client``, 403)."""


def allow_test_tokens(server_id: str, *, username: str, client_id: str) -> ShimTestPermission:
    """Let a resource server mint test tokens for a user through a client; commit.

    Allowing again replaces the user and client (and starts a new family).

    :raises NotFoundError: for an unknown resource server, user or client.
    :raises ValidationError: for a disabled user or client.
    """
    server = client_service.require_resource_server(server_id)
    user = user_service.require_user(username)
    oauth_client = client_service.require_client(client_id)
    if user.disabled:
        raise ValidationError(f"user {user.username!r} is disabled")
    if oauth_client.disabled:
        raise ValidationError(f"client {oauth_client.client_id!r} is disabled")
    if not oauth_client.scopes:
        raise ValidationError(f"client {oauth_client.client_id!r} has no scope to grant")
    permission = _permission_of(server.id)
    if permission is None:
        permission = ShimTestPermission(resource_server_id=server.id)
        db.session.add(permission)
    if (permission.user_id, permission.oauth_client_id) != (user.id, oauth_client.id):
        permission.family_id = None
    permission.user_id = user.id
    permission.oauth_client_id = oauth_client.id
    record_event(
        "test_tokens.allowed",
        actor="cli",
        client_id=oauth_client.client_id,
        username=user.username,
        resource_server=server.server_id,
    )
    db.session.commit()
    return permission


def revoke_test_tokens(server_id: str) -> bool:
    """Take the permission back and revoke the family it minted into; commit.

    :raises NotFoundError: for an unknown resource server.
    :returns: whether there was a permission.
    """
    server = client_service.require_resource_server(server_id)
    permission = _permission_of(server.id)
    if permission is None:
        return False
    user = db.session.get(User, permission.user_id)
    oauth_client = db.session.get(OAuth2Client, permission.oauth_client_id)
    family_id = permission.family_id
    db.session.delete(permission)
    record_event(
        "test_tokens.revoked",
        actor="cli",
        client_id=oauth_client.client_id if oauth_client else None,
        username=user.username if user else None,
        resource_server=server.server_id,
    )
    if family_id is None:
        db.session.commit()
    else:
        # The tokens a shim no longer may mint should not outlive the permission.
        revocation_service.revoke_family(family_id, reason="test_tokens_revoked")
    return True


def get_permission(server_id: str) -> ShimTestPermission | None:
    """Return the resource server's test-token permission, if any."""
    server = client_service.get_resource_server(server_id)
    return None if server is None else _permission_of(server.id)


def issue_test_token(caller: SecretMatch) -> dict[str, Any]:
    """Mint an access token for the caller's allowed user and client; commit.

    The token joins the permission's family while that family is live; otherwise a
    new family is opened and remembered. The row is locked while this happens, so
    concurrent calls of one shim still share one family.

    :raises MintRefusedError: when the caller is not an allowed resource server, or
        the user or client has been disabled.
    """
    if caller.owner_kind != "resource_server":
        _refuse(caller, "not_a_resource_server", "Only a resource server may mint test tokens.")
    permission = db.session.scalar(
        select(ShimTestPermission)
        .where(ShimTestPermission.resource_server_id == caller.owner_pk)
        .with_for_update()
    )
    if permission is None:
        _refuse(caller, "not_allowed", "This resource server may not mint test tokens.")
    user = db.session.get(User, permission.user_id)
    oauth_client = db.session.get(OAuth2Client, permission.oauth_client_id)
    if user is None or oauth_client is None or user.disabled or oauth_client.disabled:
        _refuse(caller, "disabled", "The test user or client is disabled.")
    now = utcnow()
    family = db.session.get(TokenFamily, permission.family_id) if permission.family_id else None
    if family is None or family.revoked_at is not None:
        family = TokenFamily(
            user_id=user.id,
            oauth_client_id=oauth_client.id,
            scope=" ".join(oauth_client.scopes),
            created_at=now,
        )
        db.session.add(family)
        db.session.flush()
        permission.family_id = family.id
    # An access token alone: test/setup hands IFTTT nothing to refresh with.
    issued = token_service.issue_into_family(
        family, oauth_client, include_refresh_token=False, now=now
    )
    record_event(
        "test_token.issued",
        actor=caller.owner_id,
        client_id=oauth_client.client_id,
        username=user.username,
        family=family.id,
        resource_server=caller.owner_id,
    )
    db.session.commit()
    body: dict[str, Any] = {"access_token": issued["access_token"], "token_type": "Bearer"}
    if "expires_in" in issued:
        body["expires_in"] = issued["expires_in"]
    body["sub"] = user.public_id
    return body


def _refuse(caller: SecretMatch, reason: str, message: str) -> NoReturn:
    """Audit a refused call in its own transaction, then refuse it."""
    who = (
        {"resource_server": caller.owner_id}
        if caller.owner_kind == "resource_server"
        else {"client_id": caller.owner_id}
    )
    record_event_now("test_token.refused", actor=caller.owner_id, reason=reason, **who)
    raise MintRefusedError(message)


def _permission_of(resource_server_pk: int) -> ShimTestPermission | None:
    return db.session.scalar(
        select(ShimTestPermission).where(
            ShimTestPermission.resource_server_id == resource_server_pk
        )
    )
