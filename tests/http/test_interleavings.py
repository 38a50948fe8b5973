"""Races played out step by step: another request lands between a read and its write.

The claim and replay UPDATEs repeat, in their WHERE clauses, checks the request
already made when it read the row (rotated_at, revoked_at, used_at, live family,
expiry). Those clauses matter only when something changes the row in between,
which the storm tests in tests/system provoke by chance. Here the other request
runs deterministically, on its own connection and app context, just before the
guarded statement reaches the database; each test fails with its clause removed.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import event
from sqlalchemy import select

from authserver.database import db
from authserver.models import AuthorizationCode
from authserver.models import Consent
from authserver.models import TokenFamily
from authserver.services import codes as code_service
from tests.conftest import csrf_token_of
from tests.factories import IFTTT_REDIRECT
from tests.factories import authorize_url
from tests.factories import basic_auth
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user
from tests.factories import query_of

FROZEN = "2030-01-01T00:00:00+00:00"
_families = TokenFamily.__table__.c

CLAIM_REFRESH = "UPDATE refresh_tokens SET rotated_at"
COUNT_REPLAY = "UPDATE refresh_tokens SET replay_count"
NEW_FAMILY = "INSERT INTO token_families"
NEW_CONSENT = "INSERT INTO consents"


def _leading_statement(statement: str) -> str:
    text = statement.lstrip()
    cte = re.match(r"WITH\s+\w+\s+AS\s*\(", text, re.IGNORECASE)
    return text[cte.end() :] if cte else text


@pytest.fixture
def before_statement(app) -> Iterator[Callable[[str, Callable[[], Any]], None]]:
    """Run ``action`` once, just before the first statement starting with ``prefix``.

    A statement made of data-modifying CTEs (PostgreSQL's one-statement rotation)
    counts as starting with its first CTE's statement.

    The action runs outside the interrupted request's context (so in one, and a
    session, of its own); it is the "other worker" of the race. On SQLite it must
    come before the interrupted request's first write, which holds the lock.
    """
    engine = db.engine
    pending: list[tuple[str, Callable[[], Any]]] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        leading = _leading_statement(statement).upper()
        for prefix, action in list(pending):
            if leading.startswith(prefix.upper()):
                pending.remove((prefix, action))
                contextvars.Context().run(action)

    event.listen(engine, "before_cursor_execute", listener)

    def arrange(prefix: str, action: Callable[[], Any]) -> None:
        pending.append((prefix, action))

    yield arrange
    event.remove(engine, "before_cursor_execute", listener)
    assert not pending, "the interleaved statement never ran"


@pytest.fixture
def first_pair(user, oauth_client, client_secret, get_code, exchange):
    return exchange(get_code(user, oauth_client), oauth_client.client_id, client_secret).get_json()


def user_info(http, access_token):
    return http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {access_token}"})


def test_code_redeemed_meanwhile_has_one_winner(
    committed, before_statement, user, oauth_client, client_secret, get_code, exchange
):
    """used_at IS NULL in the claim: the loser of the race gets no second family."""
    code = get_code(user, oauth_client)
    client_id = oauth_client.client_id  # the race runs outside the test's context
    other: list[Any] = []
    before_statement(NEW_FAMILY, lambda: other.append(exchange(code, client_id, client_secret)))
    late = exchange(code, client_id, client_secret)
    assert other[0].status_code == 200
    assert late.status_code == 400
    assert late.get_json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: the replay revokes what the code issued.
    assert committed(select(_families.revoke_reason)) == [("code_replay",)]


def test_code_expiring_meanwhile_is_refused(
    monkeypatch, committed, user, oauth_client, client_secret, get_code, exchange
):
    """expires_at > now in the claim: a code found live but expired at redemption fails."""
    with freeze_time(FROZEN) as frozen:
        code = get_code(user, oauth_client)
        frozen.tick(599)
        find = code_service.find_authorization_code

        def find_then_tick(*args: Any, **kwargs: Any) -> Any:
            found = find(*args, **kwargs)
            frozen.tick(1)
            return found

        monkeypatch.setattr(code_service, "find_authorization_code", find_then_tick)
        response = exchange(code, oauth_client.client_id, client_secret)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    assert committed(select(_families.id)) == []


def test_refresh_token_revoked_meanwhile_is_refused(
    http, app, committed, before_statement, oauth_client, client_secret, first_pair, refresh
):
    """revoked_at IS NULL in the claim: a token revoked (RFC 7009) after the read is dead."""
    r0 = first_pair["refresh_token"]
    auth = basic_auth(oauth_client.client_id, client_secret)
    before_statement(
        CLAIM_REFRESH,
        lambda: app.test_client().post(
            "/oauth/revoke", data={"token": r0, "token_type_hint": "refresh_token"}, headers=auth
        ),
    )
    response = refresh(r0, oauth_client.client_id, client_secret)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    assert len(committed(select(_families.id))) == 1


def test_refresh_rotated_meanwhile_answers_the_winners_pair(
    app, committed, before_statement, oauth_client, client_secret, first_pair, refresh
):
    """rotated_at IS NULL in the claim (and UNIQUE parent_id): one successor, replayed."""
    r0 = first_pair["refresh_token"]
    other: list[Any] = []
    form = {
        "grant_type": "refresh_token",
        "refresh_token": r0,
        "client_id": oauth_client.client_id,
        "client_secret": client_secret,
    }
    before_statement(
        CLAIM_REFRESH, lambda: other.append(app.test_client().post("/oauth/token", data=form))
    )
    late = refresh(r0, oauth_client.client_id, client_secret)
    assert other[0].status_code == 200
    assert late.status_code == 200
    assert late.get_json()["refresh_token"] == other[0].get_json()["refresh_token"]
    assert late.get_json()["access_token"] == other[0].get_json()["access_token"]


def test_replay_refused_when_family_revoked_meanwhile(
    http, app, committed, before_statement, oauth_client, client_secret, first_pair, refresh
):
    """The live-family clause of the replay UPDATE: no replay out of a revoked grant."""
    r0 = first_pair["refresh_token"]
    r1 = refresh(r0, oauth_client.client_id, client_secret).get_json()["refresh_token"]
    before_statement(
        COUNT_REPLAY,
        lambda: app.test_cli_runner().invoke(args=["tokens", "revoke", "--token", r1]),
    )
    replay = refresh(r0, oauth_client.client_id, client_secret)
    assert replay.status_code == 400
    assert replay.get_json()["error"] == "invalid_grant"
    assert committed(select(_families.revoke_reason)) == [("admin",)]


def test_replay_refused_when_family_revoked_meanwhile_between_live_families(
    app, committed, before_statement, user, oauth_client, client_secret, get_code, exchange, refresh
):
    """The live-family clause reads the presented token's own family, not any other one.

    Live grants of other users and clients sit on both sides of it in id order.
    """
    make_tokens(make_user(username="skyler"), make_oauth_client(name="Earlier")[0])
    pair = exchange(get_code(user, oauth_client), oauth_client.client_id, client_secret).get_json()
    make_tokens(make_user(username="jesse"), make_oauth_client(name="Later")[0])
    r0 = pair["refresh_token"]
    r1 = refresh(r0, oauth_client.client_id, client_secret).get_json()["refresh_token"]
    before_statement(
        COUNT_REPLAY,
        lambda: app.test_cli_runner().invoke(args=["tokens", "revoke", "--token", r1]),
    )
    replay = refresh(r0, oauth_client.client_id, client_secret)
    assert replay.status_code == 400
    assert replay.get_json()["error"] == "invalid_grant"
    reasons = committed(select(_families.revoke_reason).order_by(_families.id))
    assert reasons == [(None,), ("admin",), (None,)]


def test_consent_approved_meanwhile_in_another_tab_still_gives_a_code(
    app, http, committed, before_statement, login_as, user, oauth_client
):
    """The approval's INSERT meets the other tab's row: same outcome, no error."""
    login_as(user)
    url = authorize_url(oauth_client.client_id, state="st-race")
    form = {"csrf_token": csrf_token_of(http.get(url).get_data(as_text=True)), "decision": "allow"}
    other_tab = app.test_client()
    other_tab.set_cookie("authserver_session", http.get_cookie("authserver_session").value)
    other: list[Any] = []
    before_statement(NEW_CONSENT, lambda: other.append(other_tab.post(url, data=form)))
    late = http.post(url, data=form)
    for response in (other[0], late):
        assert response.status_code == 302
        assert response.headers["Location"].startswith(IFTTT_REDIRECT + "?")
        assert set(query_of(response.headers["Location"])) == {"code", "state"}
        assert query_of(response.headers["Location"])["state"] == "st-race"
    consents = Consent.__table__.c
    assert committed(select(consents.user_id, consents.oauth_client_id, consents.scope)) == [
        (user.id, oauth_client.id, "ifttt")
    ]
    assert len(committed(select(AuthorizationCode.__table__.c.id))) == 2
