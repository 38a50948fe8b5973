"""IFTTT's connection test, end to end over HTTP against a real server process."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode
from urllib.parse import urljoin

import pytest
import requests
from sqlalchemy import func
from sqlalchemy import select

from authserver.database import db
from authserver.models import RefreshToken
from authserver.models import TokenFamily
from tests.conftest import csrf_token_of
from tests.factories import IFTTT_REDIRECT
from tests.factories import PASSWORD
from tests.factories import query_of

pytestmark = pytest.mark.slow

TIMEOUT = 10


def hidden_value(page: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', page) or re.search(
        rf'<input[^>]*value="([^"]*)"[^>]*name="{name}"', page
    )
    assert match, f"no hidden {name!r} in page:\n{page}"
    return html.unescape(match.group(1))


def form_action(page: str) -> str:
    match = re.search(r'<form method="post" action="([^"]*)"', page)
    assert match, f"no form in page:\n{page}"
    return html.unescape(match.group(1))


def authorize_in_browser(base_url: str, url: str, username: str, password: str) -> str:
    """Act as the user's browser: log in, allow, and return the redirect's Location.

    The login form posts username, password, csrf_token and next; the consent form
    posts decision=allow with its csrf_token back to the authorize URL.
    """
    with requests.Session() as browser:
        # Not logged in yet: the authorize URL redirects to the login page.
        page = browser.get(url, timeout=TIMEOUT)
        assert page.status_code == 200, page.text
        assert "/login" in page.url, page.url
        login = browser.post(
            page.url.split("?")[0],
            data={
                "username": username,
                "password": password,
                "csrf_token": csrf_token_of(page.text),
                "next": hidden_value(page.text, "next"),
            },
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        assert login.status_code == 302, login.text
        back = urljoin(base_url, login.headers["Location"])
        assert "/oauth/authorize" in back, back
        consent = browser.get(back, allow_redirects=False, timeout=TIMEOUT)
        if consent.status_code == 302:  # consent remembered from an earlier run
            return str(consent.headers["Location"])
        assert consent.status_code == 200, consent.text
        decided = browser.post(
            urljoin(base_url, form_action(consent.text)),
            data={
                "decision": "allow",
                "csrf_token": csrf_token_of(consent.text),
            },
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        assert decided.status_code == 302, decided.text
        return str(decided.headers["Location"])


def user_info(base_url: str, access_token: str) -> requests.Response:
    return requests.get(
        base_url + "/ifttt/v1/user/info",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=TIMEOUT,
    )


def test_ifttt_connection_sequence_passes_over_http(live_server, user, oauth_client, client_secret):
    base = live_server.base_url
    query = {
        "client_id": oauth_client.client_id,
        "response_type": "code",
        "scope": "ifttt",
        "state": "a00caec8dbd08e50",
        "redirect_uri": IFTTT_REDIRECT,
    }
    location = authorize_in_browser(
        base, base + "/oauth/authorize?" + urlencode(query), user.username, PASSWORD
    )
    assert location.startswith(IFTTT_REDIRECT + "?"), location
    granted = query_of(location)
    assert granted["state"] == "a00caec8dbd08e50"

    def token(**data: str) -> requests.Response:
        # Exactly as IFTTT posts: form-encoded, client credentials in the body.
        data.update(client_id=oauth_client.client_id, client_secret=client_secret)
        return requests.post(base + "/oauth/token", data=data, timeout=TIMEOUT)

    first = token(
        grant_type="authorization_code",
        code=granted["code"],
        redirect_uri=IFTTT_REDIRECT,
    )
    assert first.status_code == 200, first.text + live_server.log()
    assert first.headers["Content-Type"].startswith("application/json")
    assert first.headers["Cache-Control"] == "no-store"
    pair0 = first.json()
    assert pair0["token_type"] == "Bearer"
    assert pair0["scope"] == "ifttt"
    r0 = pair0["refresh_token"]

    one = token(grant_type="refresh_token", refresh_token=r0)  # R0 -> R1
    assert one.status_code == 200, one.text
    pair1 = one.json()
    assert pair1["refresh_token"] != r0
    assert pair1["access_token"] != pair0["access_token"]

    # "Ensure older refresh token does not expire immediately": R0 again -> the same R1.
    again = token(grant_type="refresh_token", refresh_token=r0)
    assert again.status_code == 200, again.text
    assert again.json()["refresh_token"] == pair1["refresh_token"]
    assert again.json()["access_token"] == pair1["access_token"]

    # R1 -> R2
    two = token(grant_type="refresh_token", refresh_token=pair1["refresh_token"])
    assert two.status_code == 200, two.text
    pair2 = two.json()
    assert pair2["refresh_token"] not in (r0, pair1["refresh_token"])

    for pair in (pair0, pair1, pair2):
        info = user_info(base, pair["access_token"])
        assert info.status_code == 200, info.text
        assert info.json()["data"]["id"] == user.public_id
        assert info.json()["data"]["name"] == user.name
    assert user_info(base, "not-a-token").status_code == 401

    log = live_server.log()
    assert "Traceback" not in log, log
    db.session.rollback()
    # One family, one straight chain R0 <- R1 <- R2, nothing revoked.
    family = db.session.scalar(select(TokenFamily))
    assert family is not None
    assert family.revoked_at is None
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.family_id == family.id)
        )
        == 3
    )
