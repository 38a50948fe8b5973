import pytest
from sqlalchemy import select

from authserver.database import db
from authserver.models import TokenFamily
from tests.factories import basic_auth
from tests.factories import make_oauth_client


@pytest.fixture
def tokens(user, oauth_client, client_secret, get_code, exchange):
    return exchange(get_code(user, oauth_client), oauth_client.client_id, client_secret).get_json()


def user_info(http, access_token):
    return http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {access_token}"})


def test_revoking_access_token_leaves_refresh_token(
    http, oauth_client, client_secret, tokens, refresh
):
    response = http.post(
        "/oauth/revoke",
        data={"token": tokens["access_token"]},
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 200
    assert user_info(http, tokens["access_token"]).status_code == 401
    assert (
        refresh(tokens["refresh_token"], oauth_client.client_id, client_secret).status_code == 200
    )


def test_revoking_refresh_token_revokes_the_grant(http, oauth_client, client_secret, tokens):
    response = http.post(
        "/oauth/revoke",
        data={
            "token": tokens["refresh_token"],
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
        },
    )
    assert response.status_code == 200
    assert user_info(http, tokens["access_token"]).status_code == 401
    assert db.session.scalar(select(TokenFamily)).revoke_reason == "client_revoked"


def test_unknown_token_revocation_answers_200(http, oauth_client, client_secret):
    response = http.post(
        "/oauth/revoke",
        data={"token": "nope"},
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 200


def test_other_clients_token_is_not_revoked(http, tokens):
    other, other_secret = make_oauth_client()
    response = http.post(
        "/oauth/revoke",
        data={"token": tokens["access_token"]},
        headers=basic_auth(other.client_id, other_secret),
    )
    assert response.status_code == 200
    assert user_info(http, tokens["access_token"]).status_code == 200


def test_revocation_requires_client_authentication(http, oauth_client, tokens):
    response = http.post(
        "/oauth/revoke",
        data={"token": tokens["access_token"]},
        headers=basic_auth(oauth_client.client_id, "wrong"),
    )
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert user_info(http, tokens["access_token"]).status_code == 200


def test_missing_token_parameter_is_invalid_request(http, oauth_client, client_secret):
    response = http.post(
        "/oauth/revoke", data={}, headers=basic_auth(oauth_client.client_id, client_secret)
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
