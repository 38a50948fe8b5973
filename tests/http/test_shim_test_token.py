"""POST /shim/test-token: test tokens for IFTTT's endpoint tests, over HTTP."""

import pytest
from freezegun import freeze_time
from sqlalchemy import func
from sqlalchemy import select

from authserver.database import db
from authserver.models import AuditEvent
from authserver.models import TokenFamily
from authserver.services import clients as client_service
from authserver.services import shim_test_tokens as test_token_service
from authserver.services import users as user_service
from tests.cli.test_clients_cli import assert_one_line_error
from tests.cli.test_clients_cli import ok
from tests.cli.test_clients_cli import run
from tests.factories import basic_auth
from tests.factories import make_oauth_client
from tests.factories import make_user

FROZEN = "2030-01-01T00:00:00+00:00"
URL = "/shim/test-token"


@pytest.fixture
def shim(app):
    server, secret = client_service.register_resource_server("Trigger shim")
    return server.server_id, secret


@pytest.fixture
def allowed(cli, shim, user, oauth_client):
    ok(
        cli,
        "resource-servers",
        "allow-test-tokens",
        shim[0],
        "--user",
        user.username,
        "--client",
        oauth_client.client_id,
    )
    return shim


def mint(http, server_id, secret):
    return http.post(URL, headers=basic_auth(server_id, secret))


def families(user, oauth_client):
    return db.session.scalar(
        select(func.count())
        .select_from(TokenFamily)
        .where(TokenFamily.user_id == user.id, TokenFamily.oauth_client_id == oauth_client.id)
    )


def assert_oauth_error(response, status, error):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == error
    assert body["error_description"]
    assert "access_token" not in body


# Refusals -----------------------------------------------------------------------


def test_test_token_refused_without_credentials(http, allowed):
    assert_oauth_error(http.post(URL), 401, "invalid_client")


def test_test_token_refused_with_bad_secret(http, allowed, user, oauth_client):
    response = mint(http, allowed[0], allowed[1] + "x")
    assert_oauth_error(response, 401, "invalid_client")
    assert families(user, oauth_client) == 0


def test_test_token_refused_for_unknown_server(http, allowed):
    assert_oauth_error(mint(http, "rs_unknown", allowed[1]), 401, "invalid_client")


def test_test_token_refused_for_server_not_allowed(http, shim, user, oauth_client):
    assert_oauth_error(mint(http, *shim), 403, "unauthorized_client")
    assert families(user, oauth_client) == 0


def test_test_token_refused_for_other_server_than_the_allowed_one(http, allowed, app):
    other, secret = client_service.register_resource_server("Other shim")
    assert_oauth_error(mint(http, other.server_id, secret), 403, "unauthorized_client")


def test_test_token_refused_for_a_client_credential(http, allowed, oauth_client, client_secret):
    # A client authenticates at introspection, but only resource servers mint test tokens.
    response = mint(http, oauth_client.client_id, client_secret)
    assert_oauth_error(response, 403, "unauthorized_client")


def test_test_token_refused_after_revoke(http, cli, allowed, user, oauth_client):
    token = mint(http, *allowed).get_json()["access_token"]
    ok(cli, "resource-servers", "allow-test-tokens", allowed[0], "--revoke")
    assert_oauth_error(mint(http, *allowed), 403, "unauthorized_client")
    # Taking the permission back also ends the tokens it minted.
    info = http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {token}"})
    assert info.status_code == 401


def test_test_token_refused_when_user_disabled(http, allowed, user):
    user_service.set_disabled(user.username, disabled=True)
    assert_oauth_error(mint(http, *allowed), 403, "unauthorized_client")


def test_test_token_only_post(http, allowed):
    assert http.get(URL, headers=basic_auth(*allowed)).status_code == 405


# Minting ------------------------------------------------------------------------


def test_test_token_works_at_user_info_and_introspection(http, allowed, user):
    response = mint(http, *allowed)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "sub"}
    assert body["token_type"] == "Bearer"
    assert body["sub"] == user.public_id
    assert body["expires_in"] == 3600
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    info = http.get("/ifttt/v1/user/info", headers=bearer)
    assert info.status_code == 200
    assert info.get_json()["data"]["id"] == body["sub"]
    claims = http.post(
        "/oauth/introspect", data={"token": body["access_token"]}, headers=basic_auth(*allowed)
    ).get_json()
    assert claims["active"] is True
    assert claims["sub"] == user.public_id


@pytest.mark.app_config(ACCESS_TOKEN_TTL=0)
def test_test_token_never_expiring_omits_expires_in(http, allowed):
    body = mint(http, *allowed).get_json()
    assert "expires_in" not in body
    assert body["access_token"]


def test_test_tokens_reuse_one_family(http, allowed, user, oauth_client):
    tokens = {mint(http, *allowed).get_json()["access_token"] for _ in range(20)}
    assert len(tokens) == 20
    assert families(user, oauth_client) == 1
    for token in tokens:
        info = http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {token}"})
        assert info.status_code == 200


def test_test_token_opens_a_new_family_after_the_old_was_revoked(
    http, cli, allowed, user, oauth_client
):
    mint(http, *allowed)
    ok(cli, "tokens", "revoke", "--user", user.username)
    response = mint(http, *allowed)
    assert response.status_code == 200
    assert families(user, oauth_client) == 2
    token = response.get_json()["access_token"]
    info = http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {token}"})
    assert info.status_code == 200


def test_test_token_expires_with_the_access_token_lifetime(http, allowed):
    with freeze_time(FROZEN) as frozen:
        token = mint(http, *allowed).get_json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        frozen.tick(3599)
        assert http.get("/ifttt/v1/user/info", headers=bearer).status_code == 200
        frozen.tick(1)
        assert http.get("/ifttt/v1/user/info", headers=bearer).status_code == 401


def test_every_test_token_call_is_audited(http, allowed, user, oauth_client):
    for _ in range(3):
        mint(http, *allowed)
    mint(http, allowed[0], "wrong")
    rows = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event_type == "test_token.issued")
    ).all()
    assert len(rows) == 3
    assert {row.username for row in rows} == {user.username}
    assert {row.client_id for row in rows} == {oauth_client.client_id}
    assert {row.details["resource_server"] for row in rows} == {allowed[0]}
    assert all("token" not in str(row.details).lower().replace("test_token", "") for row in rows)


def test_refused_calls_are_audited(http, shim, oauth_client, client_secret):
    mint(http, *shim)
    mint(http, oauth_client.client_id, client_secret)
    rows = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.event_type == "test_token.refused")
        .order_by(AuditEvent.id)
    ).all()
    assert [row.details["reason"] for row in rows] == ["not_allowed", "not_a_resource_server"]
    assert rows[0].details["resource_server"] == shim[0]
    assert rows[1].client_id == oauth_client.client_id


def test_allow_and_revoke_are_audited(cli, allowed, user, oauth_client):
    ok(cli, "resource-servers", "allow-test-tokens", allowed[0], "--revoke")
    rows = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.event_type.like("test_tokens.%"))
        .order_by(AuditEvent.id)
    ).all()
    assert [row.event_type for row in rows] == ["test_tokens.allowed", "test_tokens.revoked"]
    # Both name the permission's user, client and resource server.
    for row in rows:
        assert (row.client_id, row.username) == (oauth_client.client_id, user.username)
        assert row.details["resource_server"] == allowed[0]


# CLI ----------------------------------------------------------------------------


def test_allow_replaces_the_user_and_client(http, cli, allowed, app):
    other_user = make_user()
    other_client, _ = make_oauth_client()
    ok(
        cli,
        "resource-servers",
        "allow-test-tokens",
        allowed[0],
        "--user",
        other_user.username,
        "--client",
        other_client.client_id,
    )
    assert mint(http, *allowed).get_json()["sub"] == other_user.public_id


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["rs_nope", "--user", "USER", "--client", "CLIENT"], "no resource server"),
        (["RS", "--user", "nobody", "--client", "CLIENT"], "nobody"),
        (["RS", "--user", "USER", "--client", "nope"], "nope"),
        (["RS"], "--user"),
        (["RS", "--user", "USER"], "--client"),
        (["RS", "--revoke", "--user", "USER"], "--revoke"),
    ],
)
def test_allow_test_tokens_bad_input_is_one_line(cli, shim, user, oauth_client, args, fragment):
    names = {"RS": shim[0], "USER": user.username, "CLIENT": oauth_client.client_id}
    args = [names.get(arg, arg) for arg in args]
    result = run(cli, "resource-servers", "allow-test-tokens", *args)
    assert_one_line_error(result, fragment)
    assert test_token_service.get_permission(shim[0]) is None


def test_revoke_without_permission_says_so(cli, shim):
    result = ok(cli, "resource-servers", "allow-test-tokens", shim[0], "--revoke")
    assert "had no" in result.stdout
