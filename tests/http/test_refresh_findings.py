"""Issue 13, "Refresh tokens": each finding reproduced as the attack (or outage) it was."""

import pytest
from sqlalchemy import select

from authserver.database import db
from authserver.models import AccessToken
from authserver.models import RefreshToken
from authserver.models import TokenFamily
from authserver.security import hash_token
from authserver.services import clients as client_service
from tests.factories import basic_auth
from tests.factories import make_oauth_client

TWO_SCOPES = ["ifttt", "read"]


@pytest.fixture
def first_pair(user, oauth_client, client_secret, get_code, exchange):
    code = get_code(user, oauth_client)
    return exchange(code, oauth_client.client_id, client_secret).get_json()


@pytest.fixture
def wide_client(app):
    return make_oauth_client(scopes=TWO_SCOPES)


@pytest.fixture
def wide_pair(user, wide_client, get_code, exchange):
    oauth_client, secret = wide_client
    code = get_code(user, oauth_client, scope="ifttt read")
    body = exchange(code, oauth_client.client_id, secret).get_json()
    assert body["scope"] == "ifttt read"
    return body


@pytest.fixture
def introspect(http, app):
    server, secret = client_service.register_resource_server("Trigger shim")

    def _introspect(token):
        return http.post(
            "/oauth/introspect", data={"token": token}, headers=basic_auth(server.server_id, secret)
        )

    return _introspect


def user_info(http, access_token):
    return http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {access_token}"})


def family():
    db.session.rollback()
    return db.session.scalars(select(TokenFamily)).one()


def test_forty_sequential_replays_in_the_window_leave_the_grant_working(
    http, oauth_client, client_secret, first_pair, refresh
):
    r0 = first_pair["refresh_token"]
    successor = refresh(r0, oauth_client.client_id, client_secret).get_json()
    answers = [refresh(r0, oauth_client.client_id, client_secret) for _ in range(40)]
    assert [a.status_code for a in answers] == [200] * 40
    assert {a.get_json()["refresh_token"] for a in answers} == {successor["refresh_token"]}
    assert family().revoked_at is None
    assert user_info(http, successor["access_token"]).status_code == 200
    next_pair = refresh(successor["refresh_token"], oauth_client.client_id, client_secret)
    assert next_pair.status_code == 200


@pytest.mark.app_config(REFRESH_MAX_REPLAYS=2)
def test_replay_past_the_cap_is_refused_without_revoking(
    http, oauth_client, client_secret, first_pair, refresh
):
    r0 = first_pair["refresh_token"]
    successor = refresh(r0, oauth_client.client_id, client_secret).get_json()
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 200
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 200
    over = refresh(r0, oauth_client.client_id, client_secret)
    assert over.status_code == 400
    assert over.get_json()["error"] == "invalid_grant"
    assert family().revoked_at is None
    assert user_info(http, successor["access_token"]).status_code == 200
    assert (
        refresh(successor["refresh_token"], oauth_client.client_id, client_secret).status_code
        == 200
    )


def test_stale_token_with_over_broad_scope_is_reuse(
    http, oauth_client, client_secret, first_pair, refresh
):
    r0 = first_pair["refresh_token"]
    r1 = refresh(r0, oauth_client.client_id, client_secret).get_json()
    r2 = refresh(r1["refresh_token"], oauth_client.client_id, client_secret).get_json()
    stale = refresh(r0, oauth_client.client_id, client_secret, scope="ifttt admin")
    assert stale.status_code == 400
    body = stale.get_json()
    assert body["error"] == "invalid_grant"
    assert "scope" not in body.get("error_description", "")
    assert family().revoke_reason == "reuse_detected"
    assert user_info(http, r2["access_token"]).status_code == 401


def test_revoked_token_with_over_broad_scope_is_invalid_grant(
    http, oauth_client, client_secret, first_pair, refresh
):
    r0 = first_pair["refresh_token"]
    revoked = http.post(
        "/oauth/revoke",
        data={"token": r0, "client_id": oauth_client.client_id, "client_secret": client_secret},
    )
    assert revoked.status_code == 200
    answer = refresh(r0, oauth_client.client_id, client_secret, scope="ifttt admin")
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_grant"


def test_valid_token_with_over_broad_scope_is_invalid_scope_and_keeps_the_token(
    oauth_client, client_secret, first_pair, refresh
):
    r0 = first_pair["refresh_token"]
    answer = refresh(r0, oauth_client.client_id, client_secret, scope="ifttt admin")
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_scope"
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 200


def test_refresh_with_a_narrower_scope_gets_that_scope(wide_client, wide_pair, refresh, introspect):
    """RFC 6749 §6: the access token gets the narrower scope, the grant keeps its own."""
    oauth_client, secret = wide_client
    narrow = refresh(wide_pair["refresh_token"], oauth_client.client_id, secret, scope="read")
    assert narrow.status_code == 200
    assert narrow.get_json()["scope"] == "read"
    assert introspect(narrow.get_json()["access_token"]).get_json()["scope"] == "read"
    again = refresh(narrow.get_json()["refresh_token"], oauth_client.client_id, secret)
    assert again.get_json()["scope"] == "ifttt read"


def test_scope_removed_from_client_is_no_longer_issued_or_active(
    app, wide_client, wide_pair, refresh, introspect
):
    oauth_client, secret = wide_client
    client_service.update_client(
        oauth_client.client_id,
        scopes=["ifttt"],
        default_access=app.config["ACCESS_TOKEN_TTL"],
        default_grace=app.config["REFRESH_GRACE_SECONDS"],
    )
    assert introspect(wide_pair["access_token"]).get_json()["scope"] == "ifttt"
    answer = refresh(wide_pair["refresh_token"], oauth_client.client_id, secret)
    assert answer.status_code == 200
    assert answer.get_json()["scope"] == "ifttt"
    assert introspect(answer.get_json()["access_token"]).get_json()["scope"] == "ifttt"
    asked = refresh(
        answer.get_json()["refresh_token"], oauth_client.client_id, secret, scope="read"
    )
    assert asked.status_code == 400
    assert asked.get_json()["error"] == "invalid_scope"


def test_grant_whose_every_scope_was_removed_is_inactive_and_not_refreshed(
    app, user, wide_client, get_code, exchange, refresh, introspect
):
    oauth_client, secret = wide_client
    code = get_code(user, oauth_client, scope="read")
    pair = exchange(code, oauth_client.client_id, secret).get_json()
    client_service.update_client(
        oauth_client.client_id,
        scopes=["ifttt"],
        default_access=app.config["ACCESS_TOKEN_TTL"],
        default_grace=app.config["REFRESH_GRACE_SECONDS"],
    )
    assert introspect(pair["access_token"]).get_json() == {"active": False}
    answer = refresh(pair["refresh_token"], oauth_client.client_id, secret)
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_scope"


def test_sealed_successor_is_erased_once_the_successor_is_used(
    oauth_client, client_secret, first_pair, refresh
):
    r0 = first_pair["refresh_token"]
    r1 = refresh(r0, oauth_client.client_id, client_secret).get_json()["refresh_token"]
    parent = db.session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(r0))
    ).one()
    assert parent.successor_ciphertext is not None
    assert refresh(r1, oauth_client.client_id, client_secret).status_code == 200
    db.session.rollback()
    db.session.expire_all()
    parent = db.session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(r0))
    ).one()
    assert parent.successor_ciphertext is None


def test_grace_replay_never_returns_an_access_token_revoked_by_rfc7009(
    http, oauth_client, client_secret, first_pair, refresh
):
    r0 = first_pair["refresh_token"]
    successor = refresh(r0, oauth_client.client_id, client_secret).get_json()
    revoked = http.post(
        "/oauth/revoke",
        data={
            "token": successor["access_token"],
            "token_type_hint": "access_token",
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
        },
    )
    assert revoked.status_code == 200
    assert user_info(http, successor["access_token"]).status_code == 401
    replay = refresh(r0, oauth_client.client_id, client_secret)
    assert replay.status_code == 200
    body = replay.get_json()
    assert body["access_token"] != successor["access_token"]
    assert body["refresh_token"] == successor["refresh_token"]
    assert user_info(http, body["access_token"]).status_code == 200
    # The fresh access token belongs to the successor, which still works once.
    fresh = db.session.scalars(
        select(AccessToken).where(AccessToken.token_hash == hash_token(body["access_token"]))
    ).one()
    assert fresh.refresh_token_id == db.session.scalar(
        select(RefreshToken.id).where(
            RefreshToken.token_hash == hash_token(successor["refresh_token"])
        )
    )
    assert (
        refresh(successor["refresh_token"], oauth_client.client_id, client_secret).status_code
        == 200
    )


def test_grace_replay_with_a_narrower_scope_gets_that_scope_not_the_sealed_one(
    wide_client, wide_pair, refresh, introspect
):
    """A replay inside the grace window answers the scope asked now (RFC 6749 §6)."""
    oauth_client, secret = wide_client
    r0 = wide_pair["refresh_token"]
    first = refresh(r0, oauth_client.client_id, secret).get_json()
    assert first["scope"] == "ifttt read"
    replay = refresh(r0, oauth_client.client_id, secret, scope="read")
    assert replay.status_code == 200
    body = replay.get_json()
    # The same successor refresh token (the replay), with a fresh access token of the
    # narrower scope rather than the sealed wide one.
    assert body["refresh_token"] == first["refresh_token"]
    assert body["scope"] == "read"
    assert body["access_token"] != first["access_token"]
    assert introspect(body["access_token"]).get_json()["scope"] == "read"
