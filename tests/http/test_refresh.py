import pytest
from freezegun import freeze_time
from sqlalchemy import func
from sqlalchemy import select

from authserver.database import db
from authserver.models import RefreshToken
from authserver.models import TokenFamily
from authserver.services import clients as client_service
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user

FROZEN = "2030-01-01T00:00:00+00:00"


@pytest.fixture
def first_pair(user, oauth_client, client_secret, get_code, exchange):
    code = get_code(user, oauth_client)
    return exchange(code, oauth_client.client_id, client_secret).get_json()


def user_info(http, access_token):
    return http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {access_token}"})


def test_ifttt_sequence_older_refresh_token_does_not_expire_immediately(
    http, oauth_client, client_secret, first_pair, refresh
):
    r0 = first_pair["refresh_token"]
    one = refresh(r0, oauth_client.client_id, client_secret)
    assert one.status_code == 200
    r1 = one.get_json()["refresh_token"]
    assert r1 != r0
    again = refresh(r0, oauth_client.client_id, client_secret)
    assert again.status_code == 200
    assert again.get_json()["refresh_token"] == r1
    assert again.get_json()["access_token"] == one.get_json()["access_token"]
    two = refresh(r1, oauth_client.client_id, client_secret)
    assert two.status_code == 200
    for body in (first_pair, one.get_json(), two.get_json()):
        assert user_info(http, body["access_token"]).status_code == 200


def test_replay_one_second_before_window_end_then_reuse_at_end(
    http, user, oauth_client, client_secret, get_code, exchange, refresh
):
    with freeze_time(FROZEN) as frozen:
        first = exchange(
            get_code(user, oauth_client), oauth_client.client_id, client_secret
        ).get_json()
        r0 = first["refresh_token"]
        successor = refresh(r0, oauth_client.client_id, client_secret).get_json()
        frozen.tick(119)
        replay = refresh(r0, oauth_client.client_id, client_secret)
        assert replay.status_code == 200
        assert replay.get_json()["refresh_token"] == successor["refresh_token"]
        assert replay.get_json()["expires_in"] == 3600 - 119
        frozen.tick(1)
        late = refresh(r0, oauth_client.client_id, client_secret)
        assert late.status_code == 400
        assert late.get_json()["error"] == "invalid_grant"
        # Reuse detected: the whole family is revoked, successor included.
        assert (
            refresh(successor["refresh_token"], oauth_client.client_id, client_secret).status_code
            == 400
        )
        assert user_info(http, successor["access_token"]).status_code == 401
        assert db.session.scalars(select(TokenFamily)).one().revoke_reason == "reuse_detected"


def test_grandparent_reuse_revokes_family(http, oauth_client, client_secret, first_pair, refresh):
    r0 = first_pair["refresh_token"]
    r1 = refresh(r0, oauth_client.client_id, client_secret).get_json()["refresh_token"]
    r2_body = refresh(r1, oauth_client.client_id, client_secret).get_json()
    response = refresh(r0, oauth_client.client_id, client_secret)
    assert response.status_code == 400
    assert user_info(http, r2_body["access_token"]).status_code == 401


def test_replay_refused_once_successor_was_used(oauth_client, client_secret, first_pair, refresh):
    r0 = first_pair["refresh_token"]
    r1 = refresh(r0, oauth_client.client_id, client_secret).get_json()["refresh_token"]
    assert refresh(r1, oauth_client.client_id, client_secret).status_code == 200
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 400


@pytest.mark.app_config(REFRESH_MAX_REPLAYS=2)
def test_replay_cap(oauth_client, client_secret, first_pair, refresh):
    r0 = first_pair["refresh_token"]
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 200
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 200
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 200
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 400


@pytest.mark.app_config(REFRESH_MAX_REPLAYS=2)
def test_replay_cap_of_a_successor_counts_from_zero(
    oauth_client, client_secret, first_pair, refresh
):
    """A token that was itself issued by a rotation gets the same cap as the first one.

    On PostgreSQL the successor is inserted by the one-statement rotation, which
    writes its replay count itself.
    """
    r0 = first_pair["refresh_token"]
    r1 = refresh(r0, oauth_client.client_id, client_secret).get_json()["refresh_token"]
    assert refresh(r1, oauth_client.client_id, client_secret).status_code == 200
    assert refresh(r1, oauth_client.client_id, client_secret).status_code == 200
    assert refresh(r1, oauth_client.client_id, client_secret).status_code == 200
    assert refresh(r1, oauth_client.client_id, client_secret).status_code == 400


def two_rotated_grants(refresh) -> list[tuple[str, str, str, str]]:
    """Two grants (alpha, then bravo: own user and client), each rotated once.

    Returns (client_id, secret, first refresh token, its successor) for each.
    """
    grants = []
    for name in ("alpha", "bravo"):
        oauth_client, secret = make_oauth_client(name=f"{name} app")
        assert secret is not None
        r0 = make_tokens(make_user(username=name), oauth_client)["refresh_token"]
        r1 = refresh(r0, oauth_client.client_id, secret).get_json()["refresh_token"]
        grants.append((oauth_client.client_id, secret, r0, r1))
    return grants


def test_using_one_grants_successor_leaves_a_later_grants_replay_window(refresh):
    """The first use of a successor erases its own parent's sealed pair, no other.

    On PostgreSQL the erasure is part of the one-statement rotation.
    """
    grants = two_rotated_grants(refresh)
    (alpha_id, alpha_secret, _, alpha_r1), (bravo_id, bravo_secret, bravo_r0, bravo_r1) = grants
    assert refresh(alpha_r1, alpha_id, alpha_secret).status_code == 200
    replay = refresh(bravo_r0, bravo_id, bravo_secret)
    assert replay.status_code == 200
    assert replay.get_json()["refresh_token"] == bravo_r1


def test_replay_refused_once_successor_was_used_beside_an_earlier_grants_unused_one(refresh):
    """Another grant's unused successor, whose parent has a lower id, is not this one's."""
    grants = two_rotated_grants(refresh)
    (bravo_id, bravo_secret, bravo_r0, bravo_r1) = grants[1]
    assert refresh(bravo_r1, bravo_id, bravo_secret).status_code == 200
    stale = refresh(bravo_r0, bravo_id, bravo_secret)
    assert stale.status_code == 400
    assert stale.get_json()["error"] == "invalid_grant"
    assert db.session.scalars(select(TokenFamily.revoke_reason)).all().count("reuse_detected") == 1


def test_replay_after_the_sealed_access_token_expired_gets_a_fresh_one(
    app, http, oauth_client, client_secret, first_pair, refresh
):
    """A grace that outlives the access lifetime: a client's grace set before the
    server-wide access lifetime was lowered (only the server-wide grace is checked
    against it at startup).
    """
    client_service.update_client(
        oauth_client.client_id, refresh_grace_lifetime=600, default_access=3600, default_grace=120
    )
    app.config["ACCESS_TOKEN_TTL"] = 300
    with freeze_time(FROZEN) as frozen:
        successor = refresh(first_pair["refresh_token"], oauth_client.client_id, client_secret)
        assert successor.get_json()["expires_in"] == 300
        frozen.tick(299)
        sealed = refresh(first_pair["refresh_token"], oauth_client.client_id, client_secret)
        assert sealed.get_json()["access_token"] == successor.get_json()["access_token"]
        assert sealed.get_json()["expires_in"] == 1
        frozen.tick(1)
        replay = refresh(first_pair["refresh_token"], oauth_client.client_id, client_secret)
        assert replay.status_code == 200
        body = replay.get_json()
        assert body["refresh_token"] == successor.get_json()["refresh_token"]
        assert body["access_token"] != successor.get_json()["access_token"]
        assert body["expires_in"] == 300
        assert user_info(http, body["access_token"]).status_code == 200


def test_token_revoked_via_rfc7009_cannot_refresh(
    http, oauth_client, client_secret, first_pair, refresh
):
    r0 = first_pair["refresh_token"]
    revoke = http.post(
        "/oauth/revoke",
        data={
            "token": r0,
            "token_type_hint": "refresh_token",
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
        },
    )
    assert revoke.status_code == 200
    response = refresh(r0, oauth_client.client_id, client_secret)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    assert user_info(http, first_pair["access_token"]).status_code == 401


@pytest.mark.app_config(REFRESH_ROTATION=False)
def test_rotation_off_keeps_refresh_token(oauth_client, client_secret, first_pair, refresh):
    r0 = first_pair["refresh_token"]
    for _ in range(3):
        body = refresh(r0, oauth_client.client_id, client_secret).get_json()
        assert body["refresh_token"] == r0
    assert db.session.scalar(select(func.count()).select_from(RefreshToken)) == 1


@pytest.mark.app_config(REFRESH_REUSE_REVOKES_FAMILY=False)
def test_reuse_without_family_revocation_still_refused(
    http, oauth_client, client_secret, first_pair, refresh
):
    r0 = first_pair["refresh_token"]
    r1 = refresh(r0, oauth_client.client_id, client_secret).get_json()
    refresh(r1["refresh_token"], oauth_client.client_id, client_secret)
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 400
    assert db.session.scalars(select(TokenFamily)).one().revoked_at is None


def test_refresh_tokens_never_expire_on_a_timer(
    oauth_client, client_secret, refresh, user, get_code, exchange
):
    with freeze_time(FROZEN) as frozen:
        first = exchange(
            get_code(user, oauth_client), oauth_client.client_id, client_secret
        ).get_json()
        frozen.tick(3 * 365 * 86400)
        assert (
            refresh(first["refresh_token"], oauth_client.client_id, client_secret).status_code
            == 200
        )


def test_previous_access_token_survives_rotation(
    http, oauth_client, client_secret, first_pair, refresh
):
    refresh(first_pair["refresh_token"], oauth_client.client_id, client_secret)
    assert user_info(http, first_pair["access_token"]).status_code == 200


def test_successor_is_stored_encrypted(oauth_client, client_secret, first_pair, refresh):
    body = refresh(first_pair["refresh_token"], oauth_client.client_id, client_secret).get_json()
    parent = db.session.scalars(select(RefreshToken).where(RefreshToken.parent_id.is_(None))).one()
    assert parent.successor_ciphertext
    assert body["refresh_token"].encode() not in parent.successor_ciphertext
    assert body["access_token"].encode() not in parent.successor_ciphertext


def test_refresh_token_of_another_client_is_refused_without_revoking(
    oauth_client, client_secret, first_pair, refresh
):
    from tests.factories import make_oauth_client

    other, other_secret = make_oauth_client()
    response = refresh(first_pair["refresh_token"], other.client_id, other_secret)
    assert response.status_code == 400
    assert db.session.scalars(select(TokenFamily)).one().revoked_at is None
