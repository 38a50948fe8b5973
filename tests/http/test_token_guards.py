"""Direct tests of the token rules that only one line of the services enforces.

Each test here was written against a mutant that the rest of the suite let live
(issue 19): removing the rule's clause makes the test fail.
"""

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from authserver.models import AuditEvent
from authserver.models import TokenFamily
from authserver.services import clients as client_service
from authserver.services import users as user_service
from tests.factories import basic_auth
from tests.factories import make_oauth_client
from tests.factories import make_tokens

FROZEN = "2030-01-01T00:00:00+00:00"
_families = TokenFamily.__table__.c
_audit = AuditEvent.__table__.c


@pytest.fixture
def first_pair(user, oauth_client, client_secret, get_code, exchange):
    return exchange(get_code(user, oauth_client), oauth_client.client_id, client_secret).get_json()


def user_info(http, access_token):
    return http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {access_token}"})


def test_refresh_refused_while_user_disabled_and_allowed_again_once_enabled(
    user, oauth_client, client_secret, first_pair, refresh
):
    """Disabling a user revokes no family: the refresh check is the only guard."""
    user_service.set_disabled(user.username, disabled=True)
    response = refresh(first_pair["refresh_token"], oauth_client.client_id, client_secret)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    user_service.set_disabled(user.username, disabled=False)
    again = refresh(first_pair["refresh_token"], oauth_client.client_id, client_secret)
    assert again.status_code == 200


def test_refresh_asking_for_more_scope_is_invalid_scope(
    user, client_secret, get_code, exchange, refresh
):
    two_scopes, secret = make_oauth_client(scopes=["ifttt", "extra"])
    assert secret is not None
    code = get_code(user, two_scopes, scope="ifttt")
    pair = exchange(code, two_scopes.client_id, secret).get_json()
    assert pair["scope"] == "ifttt"
    wider = refresh(pair["refresh_token"], two_scopes.client_id, secret, scope="ifttt extra")
    assert wider.status_code == 400
    assert wider.get_json()["error"] == "invalid_scope"
    same = refresh(pair["refresh_token"], two_scopes.client_id, secret, scope="ifttt")
    assert same.status_code == 200
    assert same.get_json()["scope"] == "ifttt"


def test_rotated_token_stays_used_after_rotation_is_switched_off(
    app, http, oauth_client, client_secret, first_pair, refresh
):
    """Turning rotation off must not bring back a token that was already rotated."""
    with freeze_time(FROZEN) as frozen:
        r0 = first_pair["refresh_token"]
        r1 = refresh(r0, oauth_client.client_id, client_secret).get_json()["refresh_token"]
        frozen.tick(3600)
        app.config["REFRESH_ROTATION"] = False
        # The current token keeps working, and is handed back unchanged.
        kept = refresh(r1, oauth_client.client_id, client_secret)
        assert kept.status_code == 200
        assert kept.get_json()["refresh_token"] == r1
        # The rotated one is reuse, however the setting changed since.
        old = refresh(r0, oauth_client.client_id, client_secret)
        assert old.status_code == 400
        assert old.get_json()["error"] == "invalid_grant"
        assert user_info(http, kept.get_json()["access_token"]).status_code == 401


def test_introspection_inactive_when_client_disabled(cli, http, user, oauth_client):
    server, server_secret = client_service.register_resource_server("Trigger shim")
    tokens = make_tokens(user, oauth_client)
    assert cli.invoke(args=["clients", "disable", "ifttt"]).exit_code == 0

    def introspect():
        return http.post(
            "/oauth/introspect",
            data={"token": tokens["access_token"]},
            headers=basic_auth(server.server_id, server_secret),
        )

    assert introspect().get_json() == {"active": False}
    assert cli.invoke(args=["clients", "enable", "ifttt"]).exit_code == 0
    assert introspect().get_json()["active"] is True


@pytest.mark.parametrize("selector", ["--token", "--user", "--client"])
def test_family_revocation_audit_names_client_and_user(
    cli, committed, user, oauth_client, selector
):
    """`audit --client/--user` finds every revocation, whichever selector revoked it."""
    tokens = make_tokens(user, oauth_client)
    value = {"--token": tokens["refresh_token"], "--user": "walter", "--client": "ifttt"}
    result = cli.invoke(args=["tokens", "revoke", selector, value[selector]])
    assert result.exit_code == 0, result.output
    rows = committed(
        select(_audit.client_id, _audit.username).where(_audit.event_type == "family.revoked")
    )
    assert rows == [("ifttt", "walter")]


def test_code_replay_audit_names_client_and_user(
    committed, user, oauth_client, client_secret, get_code, exchange
):
    code = get_code(user, oauth_client)
    exchange(code, oauth_client.client_id, client_secret)
    exchange(code, oauth_client.client_id, client_secret)
    rows = committed(
        select(_audit.client_id, _audit.username).where(_audit.event_type == "family.revoked")
    )
    assert rows == [("ifttt", "walter")]
