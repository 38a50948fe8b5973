import pytest
from authlib.oauth2.rfc6749 import InvalidClientError
from freezegun import freeze_time

from authserver.oauth2 import introspection
from authserver.services import clients as client_service
from authserver.services import revocation as revocation_service
from authserver.services import users as user_service
from tests.conftest import log_in
from tests.factories import basic_auth
from tests.factories import make_confidential_client
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user

FROZEN = "2030-01-01T00:00:00+00:00"
URL = "/oauth/introspect"
ACTIVE_FIELDS = {
    "active",
    "sub",
    "username",
    "client_id",
    "scope",
    "token_type",
    "exp",
    "iat",
    "iss",
}


@pytest.fixture
def resource_server(app):
    server, secret = client_service.register_resource_server("Trigger shim")
    return server.server_id, secret


@pytest.fixture
def tokens(user, oauth_client):
    return make_tokens(user, oauth_client)


@pytest.fixture
def introspect(http, resource_server):
    def _introspect(token, **extra):
        return http.post(URL, data={"token": token, **extra}, headers=basic_auth(*resource_server))

    return _introspect


def assert_inactive(response):
    assert response.status_code == 200
    assert response.get_json() == {"active": False}
    assert response.headers["Cache-Control"] == "no-store"


def test_introspection_describes_active_token_via_basic(
    http, user, oauth_client, tokens, introspect
):
    response = introspect(tokens["access_token"])
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == ACTIVE_FIELDS
    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    assert body["username"] == "walter"
    assert body["client_id"] == oauth_client.client_id
    assert body["scope"] == "ifttt"
    assert body["iss"] == "http://localhost"
    assert body["exp"] - body["iat"] == 3600
    assert response.headers["Cache-Control"] == "no-store"
    assert response.mimetype == "application/json"


def test_introspection_sub_equals_user_info_id(http, tokens, introspect):
    sub = introspect(tokens["access_token"]).get_json()["sub"]
    info = http.get(
        "/ifttt/v1/user/info", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert sub == info.get_json()["data"]["id"]


def test_introspection_exact_times_when_frozen(user, oauth_client, introspect):
    with freeze_time(FROZEN):
        access = make_tokens(user, oauth_client)["access_token"]
        body = introspect(access).get_json()
    assert body["iat"] == 1893456000
    assert body["exp"] == 1893456000 + 3600


def test_introspection_accepts_credentials_in_form_body(http, tokens, resource_server):
    server_id, secret = resource_server
    response = http.post(
        URL, data={"token": tokens["access_token"], "client_id": server_id, "client_secret": secret}
    )
    assert response.status_code == 200
    assert response.get_json()["active"] is True


def test_introspection_accepts_token_type_hint(tokens, introspect):
    body = introspect(tokens["access_token"], token_type_hint="access_token").get_json()
    assert body["active"] is True


def test_introspection_rejected_without_credentials(http, tokens):
    response = http.post(URL, data={"token": tokens["access_token"]})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert "active" not in response.get_json()
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize("how", ["basic", "form"])
def test_introspection_rejected_with_wrong_secret(http, tokens, resource_server, how):
    server_id, _secret = resource_server
    data = {"token": tokens["access_token"]}
    headers = {}
    if how == "basic":
        headers = basic_auth(server_id, "wrong-secret")
    else:
        data.update(client_id=server_id, client_secret="wrong-secret")
    response = http.post(URL, data=data, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_introspection_rejected_for_unknown_caller(http, tokens):
    response = http.post(
        URL, data={"token": tokens["access_token"]}, headers=basic_auth("rs_nobody", "secret")
    )
    assert response.status_code == 401


def test_resource_server_authentication_failure_is_a_401_at_its_source(app, resource_server):
    """authenticate_caller's own contract, whoever renders the error.

    Both endpoints that call it answer through handle_error_response, which sets 401 on
    every InvalidClientError, so over HTTP the status given at the raise is never seen
    (a 400 or 402 there survived mutation testing). An endpoint that renders the error
    itself must still answer 401 with a Basic challenge (RFC 6749 §5.2).
    """
    server_id, _secret = resource_server
    with (
        app.test_request_context(
            URL, method="POST", data={"token": "x"}, headers=basic_auth(server_id, "wrong-secret")
        ),
        pytest.raises(InvalidClientError) as refused,
    ):
        introspection.authenticate_caller()
    assert refused.value.status_code == 401
    headers = dict(refused.value.get_headers())
    assert headers["WWW-Authenticate"].startswith("Basic ")


def test_introspection_rejected_with_malformed_basic(http, tokens):
    response = http.post(
        URL,
        data={"token": tokens["access_token"]},
        headers={"Authorization": "Basic !!!not-base64"},
    )
    assert response.status_code == 401


def test_introspection_inactive_for_unknown_token(introspect):
    assert_inactive(introspect("not-a-token"))


def test_introspection_inactive_for_oversized_token(introspect):
    assert_inactive(introspect("x" * 5000))


def test_introspection_rejected_without_token_parameter(http, resource_server):
    response = http.post(URL, data={}, headers=basic_auth(*resource_server))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_introspection_inactive_at_expiry_not_before(user, oauth_client, introspect):
    with freeze_time(FROZEN) as frozen:
        access = make_tokens(user, oauth_client)["access_token"]
        frozen.tick(3599)
        assert introspect(access).get_json()["active"] is True
        frozen.tick(1)
        assert_inactive(introspect(access))


def test_introspection_inactive_when_revoked(tokens, introspect):
    found = revocation_service.find_token(tokens["access_token"])
    assert found is not None
    revocation_service.revoke_family(found.family_id, reason="admin")
    assert_inactive(introspect(tokens["access_token"]))
    assert_inactive(introspect(tokens["refresh_token"]))


def test_introspection_inactive_when_user_disabled(user, tokens, introspect):
    user_service.set_disabled(user.username, disabled=True)
    assert_inactive(introspect(tokens["access_token"]))


def test_introspection_client_sees_its_own_token(http, tokens, oauth_client, client_secret):
    response = http.post(
        URL,
        data={"token": tokens["access_token"]},
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 200
    assert response.get_json()["active"] is True


def test_introspection_inactive_for_other_clients_token(http, tokens):
    other, other_secret = make_confidential_client(name="Other")
    response = http.post(
        URL,
        data={"token": tokens["access_token"]},
        headers=basic_auth(other.client_id, other_secret),
    )
    assert_inactive(response)


def test_introspection_rejected_for_disabled_resource_server(http, app, tokens, resource_server):
    from authserver.database import db

    server = client_service.require_resource_server(resource_server[0])
    server.disabled = True
    db.session.commit()
    response = http.post(
        URL, data={"token": tokens["access_token"]}, headers=basic_auth(*resource_server)
    )
    assert response.status_code == 401


def test_introspection_sets_no_cookie_and_does_not_read_session(http, tokens, introspect):
    for token in (tokens["access_token"], "unknown"):
        response = introspect(token)
        assert "Set-Cookie" not in response.headers
        # Flask adds "Vary: Cookie" whenever the session is accessed at all.
        assert "Cookie" not in response.headers.get("Vary", "")
    refused = http.post(URL, data={"token": "x"})
    assert refused.status_code == 401
    assert "Set-Cookie" not in refused.headers


def test_introspection_ignores_a_logged_in_session(http, user, tokens, introspect):
    # As after a real login: a permanent session, which Flask re-sends on every
    # request that opens it.
    log_in(http, user)
    with http.session_transaction() as session:
        session.permanent = True
    # Control: an ordinary page refreshes that cookie.
    assert "Set-Cookie" in http.get("/").headers
    response = introspect(tokens["access_token"])
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")


def test_introspection_listed_in_metadata(http):
    body = http.get("/.well-known/oauth-authorization-server").get_json()
    assert body["introspection_endpoint"] == "http://localhost/oauth/introspect"
    assert set(body["introspection_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }


def test_introspection_only_accepts_post(http, resource_server):
    response = http.get(URL, headers=basic_auth(*resource_server))
    assert response.status_code == 405


def test_introspection_for_other_user_is_independent(introspect, oauth_client):
    other = make_user(username="jesse", name="Jesse")
    access = make_tokens(other, oauth_client)["access_token"]
    body = introspect(access).get_json()
    assert body["username"] == "jesse"
    assert body["sub"] == other.public_id


def test_introspection_names_the_owner_not_a_user_registered_before(user, introspect, oauth_client):
    owner = make_user(username="jesse", name="Jesse")
    assert user.id < owner.id
    body = introspect(make_tokens(owner, oauth_client)["access_token"]).get_json()
    assert (body["username"], body["sub"]) == ("jesse", owner.public_id)


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token"])
def test_introspection_inactive_for_refresh_token(tokens, introspect, hint):
    """A refresh token authorizes no call: shims must never see it as active."""
    extra = {"token_type_hint": hint} if hint else {}
    assert_inactive(introspect(tokens["refresh_token"], **extra))


def test_introspection_ignores_unknown_token_type_hint(tokens, introspect):
    """RFC 7662 §2.1: the hint is advisory; the search covers every type."""
    response = introspect(tokens["access_token"], token_type_hint="id_token")
    assert response.status_code == 200
    assert response.get_json()["active"] is True


@pytest.mark.app_config(ACCESS_TOKEN_TTL=0, REFRESH_GRACE_SECONDS=0)
def test_introspection_omits_exp_for_non_expiring_token(tokens, introspect):
    body = introspect(tokens["access_token"]).get_json()
    assert set(body) == ACTIVE_FIELDS - {"exp"}
    assert body["active"] is True


def test_introspection_inactive_for_a_later_clients_token(http, user):
    """Whichever client was registered first, one never sees another's token."""
    caller, caller_secret = make_confidential_client(name="Registered first")
    owner, _owner_secret = make_oauth_client(name="Registered later")
    assert owner.id > caller.id
    response = http.post(
        URL,
        data={"token": make_tokens(user, owner)["access_token"]},
        headers=basic_auth(caller.client_id, caller_secret),
    )
    assert_inactive(response)


def test_resource_server_sees_every_clients_token_whatever_the_row_ids(http, user):
    """A resource server is no client: its row id is never compared with the token's."""
    servers = [client_service.register_resource_server(f"Shim {n}") for n in range(3)]
    owner, _owner_secret = make_oauth_client(name="Token owner")
    access = make_tokens(user, owner)["access_token"]
    for server, secret in servers:
        response = http.post(
            URL, data={"token": access}, headers=basic_auth(server.server_id, secret)
        )
        assert response.status_code == 200
        assert response.get_json()["active"] is True, (server.id, owner.id)
