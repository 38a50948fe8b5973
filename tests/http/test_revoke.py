from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from authserver.database import db
from authserver.models import AuditEvent
from authserver.models import CredentialSecret
from authserver.models import TokenFamily
from authserver.services import clients as client_service
from tests.factories import basic_auth
from tests.factories import make_confidential_client
from tests.factories import make_oauth_client
from tests.factories import make_tokens


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
    assert db.session.scalars(select(TokenFamily)).one().revoke_reason == "client_revoked"


def test_unknown_token_revocation_answers_200(http, oauth_client, client_secret):
    response = http.post(
        "/oauth/revoke",
        data={"token": "nope"},
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 200


def test_other_clients_token_is_not_revoked(http, tokens):
    other, other_secret = make_confidential_client()
    response = http.post(
        "/oauth/revoke",
        data={"token": tokens["access_token"]},
        headers=basic_auth(other.client_id, other_secret),
    )
    assert response.status_code == 200
    assert user_info(http, tokens["access_token"]).status_code == 200


def test_earlier_clients_revocation_leaves_a_later_clients_token_active(
    http, user, oauth_client, client_secret
):
    # The owner check compares client ids for equality: a client registered later
    # (a higher row id) is no more revocable by others than an earlier one.
    later, _secret = make_oauth_client(client_id="later")
    assert later.id > oauth_client.id
    token = make_tokens(user, later)["access_token"]
    response = http.post(
        "/oauth/revoke",
        data={"token": token},
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 200
    assert user_info(http, token).status_code == 200


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


@pytest.mark.parametrize("how", ["basic", "post"])
def test_revocation_with_the_previous_secret_is_recorded(
    http, user, oauth_client, client_secret, how
):
    with freeze_time("2030-01-01T00:00:00+00:00") as frozen:
        tokens = make_tokens(user, oauth_client)
        assert user_info(http, tokens["access_token"]).status_code == 200
        client_service.rotate_secret(
            oauth_client, overlap=timedelta(hours=1), owner_id=oauth_client.client_id
        )
        frozen.tick(300)
        data = {"token": tokens["access_token"]}
        if how == "basic":
            headers = basic_auth(oauth_client.client_id, client_secret)
        else:
            headers = {}
            data.update(client_id=oauth_client.client_id, client_secret=client_secret)
        response = http.post("/oauth/revoke", data=data, headers=headers)
        assert response.status_code == 200
        db.session.expire_all()
        old = db.session.scalars(
            select(CredentialSecret).where(CredentialSecret.expires_at.is_not(None))
        ).one()
        assert old.last_used_at is not None
        assert old.last_used_at.isoformat() == "2030-01-01T00:05:00+00:00"
        used_old = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "secret.used_old")
        ).all()
        assert [event.created_at.isoformat() for event in used_old] == ["2030-01-01T00:05:00+00:00"]
        assert user_info(http, tokens["access_token"]).status_code == 401
