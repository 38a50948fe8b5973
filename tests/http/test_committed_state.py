"""Every state change an endpoint makes is committed: seen from a connection of its own.

Each request runs in its own app context and session (tests/conftest.py), so a
write that is never committed is rolled back when the request ends, as in
production; these tests read the effect back through a separate connection.
"""

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from authserver.models import AccessToken
from authserver.models import AuthorizationCode
from authserver.models import RefreshToken
from authserver.models import TokenFamily
from tests.factories import basic_auth

FROZEN = "2030-01-01T00:00:00+00:00"
_families = TokenFamily.__table__.c
_access = AccessToken.__table__.c
_refresh = RefreshToken.__table__.c
_codes = AuthorizationCode.__table__.c


@pytest.fixture
def first_pair(user, oauth_client, client_secret, get_code, exchange):
    return exchange(get_code(user, oauth_client), oauth_client.client_id, client_secret).get_json()


def revocations(committed):
    return committed(select(_families.revoke_reason, _families.revoked_at.is_not(None)))


def test_code_exchange_is_committed(committed, first_pair):
    assert committed(select(_codes.used_at.is_not(None), _codes.family_id.is_not(None))) == [
        (True, True)
    ]
    assert len(committed(select(_access.id))) == 1
    assert len(committed(select(_refresh.id))) == 1


def test_rotation_is_committed(committed, oauth_client, client_secret, first_pair, refresh):
    r0 = first_pair["refresh_token"]
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 200
    rows = committed(select(_refresh.parent_id.is_(None), _refresh.rotated_at.is_not(None)))
    assert sorted(rows) == [(False, False), (True, True)]


def test_grace_replay_count_is_committed(
    committed, oauth_client, client_secret, first_pair, refresh
):
    r0 = first_pair["refresh_token"]
    refresh(r0, oauth_client.client_id, client_secret)
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 200
    assert committed(select(_refresh.replay_count).where(_refresh.parent_id.is_(None))) == [(1,)]


def test_reuse_revocation_is_committed(committed, oauth_client, client_secret, first_pair, refresh):
    with freeze_time(FROZEN) as frozen:
        r0 = first_pair["refresh_token"]
        refresh(r0, oauth_client.client_id, client_secret)
        frozen.tick(3600)
        assert refresh(r0, oauth_client.client_id, client_secret).status_code == 400
    assert revocations(committed) == [("reuse_detected", True)]


def test_access_token_revocation_is_committed(
    http, committed, oauth_client, client_secret, first_pair, refresh
):
    http.post(
        "/oauth/revoke",
        data={"token": first_pair["access_token"]},
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    # The access token alone is revoked; its family lives on.
    assert revocations(committed) == [(None, False)]
    assert committed(select(_access.revoked_at.is_not(None))) == [(True,)]


def test_code_replay_revocation_is_committed(
    committed, user, oauth_client, client_secret, get_code, exchange
):
    code = get_code(user, oauth_client)
    assert exchange(code, oauth_client.client_id, client_secret).status_code == 200
    assert exchange(code, oauth_client.client_id, client_secret).status_code == 400
    assert revocations(committed) == [("code_replay", True)]


def test_refresh_token_revocation_is_committed(
    http, committed, oauth_client, client_secret, first_pair
):
    response = http.post(
        "/oauth/revoke",
        data={"token": first_pair["refresh_token"], "token_type_hint": "refresh_token"},
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 200
    assert revocations(committed) == [("client_revoked", True)]
    assert committed(select(_refresh.revoked_at.is_not(None))) == [(True,)]


def test_rejected_request_leaves_no_half_written_rows(
    committed, user, oauth_client, client_secret, get_code, exchange
):
    code = get_code(user, oauth_client)
    assert exchange(code, oauth_client.client_id, "wrong" + client_secret).status_code == 401
    assert committed(select(_codes.used_at)) == [(None,)]
    assert committed(select(_families.id)) == []
