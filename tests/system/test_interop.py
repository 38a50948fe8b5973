"""A third-party OAuth client (Authlib's OAuth2Session) against a real server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.requests_client import OAuthError
from sqlalchemy import select

from authserver.database import db
from authserver.models import AuthorizationCode
from tests.factories import IFTTT_REDIRECT
from tests.factories import PASSWORD
from tests.factories import query_of
from tests.system.conftest import ServerProcess
from tests.system.conftest import start_server

from .test_ifttt_sequence import authorize_in_browser

pytestmark = pytest.mark.slow

TIMEOUT = 10


@pytest.fixture(scope="module")
def live_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server for both library runs (each test still gets a clean database)."""
    server = start_server(database_url, tmp_path_factory.mktemp("server"))
    yield server
    server.stop()


def library_session(oauth_client, client_secret, **kwargs) -> OAuth2Session:
    # IFTTT's documented way: client secret in the form body.
    return OAuth2Session(
        oauth_client.client_id,
        client_secret,
        scope="ifttt",
        redirect_uri=IFTTT_REDIRECT,
        token_endpoint_auth_method="client_secret_post",
        **kwargs,
    )


def assert_token_fields(token) -> None:
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "ifttt"
    assert len(token["access_token"]) >= 43
    assert len(token["refresh_token"]) >= 43
    assert token["expires_in"] == 3600
    assert token["expires_at"] > 0  # the library computed it from expires_in


def assert_user_info(session: OAuth2Session, base: str, user) -> None:
    info = session.get(base + "/ifttt/v1/user/info", timeout=TIMEOUT)
    assert info.status_code == 200, info.text
    assert info.json()["data"] == {"id": user.public_id, "name": user.name}


def test_authlib_client_completes_code_flow_and_refresh(
    live_server, user, oauth_client, client_secret
):
    base = live_server.base_url
    session = library_session(oauth_client, client_secret)
    state = secrets.token_hex(8)
    url, returned_state = session.create_authorization_url(base + "/oauth/authorize", state=state)
    assert returned_state == state
    location = authorize_in_browser(base, url, user.username, PASSWORD)
    assert location.startswith(IFTTT_REDIRECT + "?"), location
    assert query_of(location)["state"] == state

    # The library parses code and state from the redirect and checks the state.
    token = session.fetch_token(
        base + "/oauth/token", authorization_response=location, timeout=TIMEOUT
    )
    assert_token_fields(token)
    assert_user_info(session, base, user)

    first_access, first_refresh = token["access_token"], token["refresh_token"]
    refreshed = session.refresh_token(base + "/oauth/token", timeout=TIMEOUT)
    assert_token_fields(refreshed)
    assert refreshed["access_token"] != first_access
    assert refreshed["refresh_token"] != first_refresh
    assert session.token["access_token"] == refreshed["access_token"]
    assert_user_info(session, base, user)

    # The code is single use, also for the library.
    with pytest.raises(OAuthError) as replay:
        session.fetch_token(base + "/oauth/token", authorization_response=location, timeout=TIMEOUT)
    assert replay.value.error == "invalid_grant"
    assert "Traceback" not in live_server.log(), live_server.log()


def test_authlib_client_completes_code_flow_with_pkce_s256(
    live_server, user, oauth_client, client_secret
):
    base = live_server.base_url
    session = library_session(oauth_client, client_secret, code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, state = session.create_authorization_url(base + "/oauth/authorize", code_verifier=verifier)
    location = authorize_in_browser(base, url, user.username, PASSWORD)
    code = query_of(location)["code"]
    db.session.rollback()
    stored = db.session.scalar(select(AuthorizationCode))
    assert stored is not None
    assert stored.code_challenge_method == "S256"
    assert stored.code_challenge  # the library's challenge is bound to the code

    # A wrong verifier is refused, and a refused attempt does not consume the code.
    with pytest.raises(OAuthError) as wrong:
        session.fetch_token(
            base + "/oauth/token",
            code=code,
            state=state,
            code_verifier=secrets.token_urlsafe(48),
            timeout=TIMEOUT,
        )
    assert wrong.value.error == "invalid_grant"

    token = session.fetch_token(
        base + "/oauth/token",
        authorization_response=location,
        code_verifier=verifier,
        timeout=TIMEOUT,
    )
    assert_token_fields(token)
    assert_user_info(session, base, user)
    refreshed = session.refresh_token(base + "/oauth/token", timeout=TIMEOUT)
    assert_token_fields(refreshed)
    assert_user_info(session, base, user)
    assert "Traceback" not in live_server.log(), live_server.log()
