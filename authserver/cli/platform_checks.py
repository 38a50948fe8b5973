"""`authserver check PLATFORM`: each linking platform's account-linking checks over HTTP.

`ifttt` runs the checks of `ifttt-check`; `google` and `alexa` run what Google's
account-linking validation and Alexa's account-linking requirements ask of the
token endpoint (README "Connecting to Google Home", "Connecting to Alexa").
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import click

from .verify import CHECKS as IFTTT_CHECKS
from .verify import Checker
from .verify import CheckFailedError
from .verify import _describe
from .verify import _json_field
from .verify import check_authorize
from .verify import check_code_exchange
from .verify import check_options
from .verify import finish
from .verify import make_checker

Check = tuple[str, Callable[[Checker], str]]


def _refresh(c: Checker, refresh_token: str, what: str) -> dict[str, Any]:
    """Refresh and return the body; a refusal or an unusable access token fails."""
    response = c.token_request(grant_type="refresh_token", refresh_token=refresh_token)
    if response.status_code != 200:
        raise CheckFailedError(f"{what} was refused: {_describe(response)}")
    body: dict[str, Any] = response.json()
    if not body.get("access_token"):
        raise CheckFailedError(f"{what}: the answer has no access_token")
    if c.user_info(body["access_token"]).status_code != 200:
        raise CheckFailedError(f"{what}: the new access token is refused by user info")
    return body


def _looks_like_jwt(token: str) -> bool:
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(header, dict) and "alg" in header


def _tokens(c: Checker) -> dict[str, Any]:
    if c.tokens is None:
        raise CheckFailedError("skipped: no tokens from the code exchange")
    return c.tokens


# Google ---------------------------------------------------------------------------


def check_opaque_access_token(c: Checker) -> str:
    """Google: the access token is opaque, not a JWT."""
    if _looks_like_jwt(_tokens(c)["access_token"]):
        raise CheckFailedError("the access token is a JWT; Google expects an opaque token")
    return "opaque (not a JWT)"


def check_refresh_gives_new_access_token(c: Checker) -> str:
    """Google: a refresh returns a new access token."""
    tokens = _tokens(c)
    body = _refresh(c, tokens["refresh_token"], "the refresh")
    if body["access_token"] == tokens["access_token"]:
        raise CheckFailedError("the refresh returned the same access token")
    c.refreshed = body
    rotated = body.get("refresh_token") not in (None, tokens["refresh_token"])
    return "200 with a new, working access token" + (" (refresh token rotated)" if rotated else "")


def check_previous_refresh_token_after_rotation(c: Checker) -> str:
    """Google: the previous refresh token still works after a rotation (new access token)."""
    tokens = _tokens(c)
    if c.refreshed is None:
        raise CheckFailedError("skipped: no refresh happened")
    if c.wait:
        time.sleep(c.wait)
    body = _refresh(
        c,
        tokens["refresh_token"],
        "the previous refresh token" + (f" after {c.wait:g}s" if c.wait else ""),
    )
    if body["access_token"] in (tokens["access_token"], c.refreshed["access_token"]):
        raise CheckFailedError(
            "the previous refresh token returned an access token already issued; Google "
            "wants a new one on every refresh (profile google: authserver clients update "
            f"{c.client_id} --profile google)"
        )
    c.refreshed = body
    return "200 with another new access token" + (f" after {c.wait:g}s" if c.wait else "")


def check_bogus_refresh_token(c: Checker) -> str:
    """Google: a bogus refresh token gets 400 with invalid_grant JSON."""
    response = c.token_request(
        grant_type="refresh_token", refresh_token="bogus-" + secrets.token_hex(16)
    )
    if response.status_code != 400 or _json_field(response, "error") != "invalid_grant":
        raise CheckFailedError(f"expected 400 invalid_grant, got {_describe(response)}")
    return "400 invalid_grant"


def check_revocation_kills_the_grant(c: Checker) -> str:
    """Google: RFC 7009 revocation of the refresh token ends the grant."""
    tokens = _tokens(c)
    newest = c.refreshed or tokens
    refresh_token = newest.get("refresh_token") or tokens["refresh_token"]
    response = c.request(
        "POST",
        c.url("/oauth/revoke"),
        browser=False,
        data={
            "token": refresh_token,
            "token_type_hint": "refresh_token",
            "client_id": c.client_id,
            "client_secret": c.client_secret,
        },
    )
    if response.status_code != 200:
        raise CheckFailedError(f"revocation answered {_describe(response)}")
    after = c.token_request(grant_type="refresh_token", refresh_token=refresh_token)
    if after.status_code != 400 or _json_field(after, "error") != "invalid_grant":
        raise CheckFailedError(f"the revoked refresh token still answers {_describe(after)}")
    if c.user_info(newest["access_token"]).status_code != 401:
        raise CheckFailedError("the access token still works after revoking the grant")
    return "200, then the refresh token gets invalid_grant and the access token 401"


# Alexa ----------------------------------------------------------------------------


def check_refreshes_carry_expires_in(c: Checker) -> str:
    """Alexa: every token answer carries expires_in (two refreshes in a row)."""
    tokens = _tokens(c)
    if "expires_in" not in tokens:
        raise CheckFailedError("the code exchange answer has no expires_in")
    current = tokens["refresh_token"]
    for attempt in ("first", "second"):
        body = _refresh(c, current, f"the {attempt} refresh")
        if not isinstance(body.get("expires_in"), int) or body["expires_in"] <= 0:
            raise CheckFailedError(f"the {attempt} refresh answer has no positive expires_in")
        current = body.get("refresh_token") or current
        c.refreshed = body
    return f"expires_in={c.refreshed['expires_in'] if c.refreshed else '?'} on each answer"


def check_original_refresh_token_after_two_refreshes(c: Checker) -> str:
    """Alexa: the original refresh token still works after two refreshes."""
    tokens = _tokens(c)
    if c.refreshed is None:
        raise CheckFailedError("skipped: no refresh happened")
    _refresh(c, tokens["refresh_token"], "the original refresh token after two refreshes")
    return "200 with a working access token"


GOOGLE_CHECKS: list[Check] = [
    ("authorize, log in, consent, redirect with code and state", check_authorize),
    ("code exchange", check_code_exchange),
    ("access token is opaque, not a JWT", check_opaque_access_token),
    ("every refresh returns a new access token", check_refresh_gives_new_access_token),
    (
        "previous refresh token still works after a rotation",
        check_previous_refresh_token_after_rotation,
    ),
    ("bogus refresh token gets 400 invalid_grant", check_bogus_refresh_token),
    ("revocation kills the grant", check_revocation_kills_the_grant),
]
ALEXA_CHECKS: list[Check] = [
    ("authorize, log in, consent, redirect with code and state", check_authorize),
    ("code exchange", check_code_exchange),
    ("refresh responses carry expires_in", check_refreshes_carry_expires_in),
    (
        "original refresh token still works after two refreshes",
        check_original_refresh_token_after_two_refreshes,
    ),
]
PLATFORMS: dict[str, list[Check]] = {
    "ifttt": IFTTT_CHECKS,
    "google": GOOGLE_CHECKS,
    "alexa": ALEXA_CHECKS,
}


@click.command("check")
@click.argument("platform", type=click.Choice(list(PLATFORMS)))
@check_options
@click.option(
    "--scope",
    default=None,
    help="Scope to request (default: ifttt for ifttt, the client's scopes otherwise).",
)
@click.option(
    "--wait",
    type=click.FloatRange(0, 3600),
    default=0.0,
    help="google: seconds to wait after a rotation before presenting the previous "
    "refresh token (past an ifttt-style grace window).",
)
def check_command(platform: str, scope: str | None, wait: float, **options: Any) -> None:
    """Run PLATFORM's account-linking checks (ifttt, google, alexa) against a deployment.

    Prints one PASS/FAIL line per check; exits 1 when any check fails. The test
    account ends up with one more connection to the client (google revokes its own).
    The client secret and password come from flags, environment variables
    (AUTHSERVER_CHECK_CLIENT_SECRET, AUTHSERVER_CHECK_PASSWORD) or stdin.
    """
    if scope is None:
        scope = "ifttt" if platform == "ifttt" else ""
    checker = make_checker(scope=scope, **options)
    checker.wait = wait
    finish(PLATFORMS[platform], checker)
