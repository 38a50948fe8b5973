import logging
from urllib.parse import unquote
from urllib.parse import urlsplit

import pytest
from freezegun import freeze_time

from authserver import create_app
from authserver.services import clients as client_service
from authserver.services import revocation as revocation_service
from authserver.services import users as user_service
from tests.conftest import base_config
from tests.factories import make_tokens
from tests.factories import make_user
from tests.system.conftest import free_port

FROZEN = "2030-01-01T00:00:00+00:00"
URL = "/ifttt/v1/user/info"

# The headers IFTTT sends with every user-info check.
IFTTT_HEADERS = {
    "Accept": "application/json",
    "Accept-Charset": "utf-8",
    "Accept-Encoding": "gzip, deflate",
    "X-Request-ID": "ifttt-req-4f1c2a",
    "IFTTT-Service-Key": "some-service-key",
    "IFTTT-Test-Mode": "1",
    "User-Agent": "IFTTT-Protocol/v1",
}


def bearer(token, scheme="Bearer"):
    return {"Authorization": f"{scheme} {token}"}


@pytest.fixture
def tokens(user, oauth_client):
    return make_tokens(user, oauth_client)


def assert_invalid_token(response):
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    body = response.get_json()
    assert list(body) == ["errors"]
    assert len(body["errors"]) == 1
    assert isinstance(body["errors"][0]["message"], str)
    assert body["errors"][0]["message"]


def test_user_info_returns_public_id_and_name(http, user, tokens):
    response = http.get(URL, headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.get_json() == {"data": {"id": user.public_id, "name": "Walter White"}}
    assert response.headers["Cache-Control"] == "no-store"


def test_user_info_names_the_owner_not_a_user_registered_before(http, user, oauth_client):
    owner = make_user(username="jesse", name="Jesse Pinkman")
    assert user.id < owner.id
    response = http.get(URL, headers=bearer(make_tokens(owner, oauth_client)["access_token"]))
    assert response.get_json() == {"data": {"id": owner.public_id, "name": "Jesse Pinkman"}}


def test_user_info_id_is_opaque_and_short(http, user, tokens):
    data = http.get(URL, headers=bearer(tokens["access_token"])).get_json()["data"]
    assert 0 < len(data["id"]) <= 200
    assert data["id"] not in {user.username, user.email, str(user.id)}
    assert user.username not in data["id"]


def test_user_info_id_is_stable_across_authorizations(http, user, oauth_client):
    first = make_tokens(user, oauth_client)["access_token"]
    second = make_tokens(user, oauth_client)["access_token"]
    ids = {http.get(URL, headers=bearer(t)).get_json()["data"]["id"] for t in (first, second)}
    assert ids == {user.public_id}


@pytest.mark.app_config(USER_URL_TEMPLATE="https://example.com/people/{username}?u={id}")
def test_user_info_includes_url_from_template(http, user, tokens):
    data = http.get(URL, headers=bearer(tokens["access_token"])).get_json()["data"]
    assert data["url"] == f"https://example.com/people/walter?u={user.public_id}"


@pytest.mark.app_config(USER_URL_TEMPLATE="https://example.com/people/{username}?u={id}#top")
@pytest.mark.parametrize(
    ("username", "encoded"),
    [
        ("a/../b?admin=1#x", "a%2F..%2Fb%3Fadmin%3D1%23x"),
        ("100%&more", "100%25%26more"),
        ("zoë☃", "zo%C3%AB%E2%98%83"),
    ],
)
def test_user_info_url_percent_encodes_what_it_substitutes(http, oauth_client, username, encoded):
    owner = make_user(username=username, name="Hostile")
    access = make_tokens(owner, oauth_client)["access_token"]
    data = http.get(URL, headers=bearer(access)).get_json()["data"]
    assert data["url"] == f"https://example.com/people/{encoded}?u={owner.public_id}#top"
    parts = urlsplit(data["url"])
    assert (parts.netloc, parts.query, parts.fragment) == (
        "example.com",
        f"u={owner.public_id}",
        "top",
    )
    assert unquote(parts.path) == f"/people/{username}"


def test_user_info_accepts_ifttt_headers(http, user, tokens):
    response = http.get(URL, headers={**IFTTT_HEADERS, **bearer(tokens["access_token"])})
    assert response.status_code == 200
    assert response.get_json()["data"]["id"] == user.public_id


def test_user_info_accepts_lowercase_bearer_scheme(http, user, tokens):
    """RFC 6750 §2.1 / RFC 7235 §2.1: the auth scheme is case-insensitive."""
    for scheme in ("bearer", "BEARER"):
        response = http.get(URL, headers=bearer(tokens["access_token"], scheme))
        assert response.status_code == 200, scheme


def test_user_info_echoes_request_id_and_logs_it(http, tokens, caplog):
    caplog.set_level(logging.INFO, logger="authserver.request")
    response = http.get(URL, headers={**IFTTT_HEADERS, **bearer(tokens["access_token"])})
    assert response.headers["X-Request-ID"] == "ifttt-req-4f1c2a"
    lines = [r for r in caplog.records if r.name == "authserver.request"]
    assert len(lines) == 1
    assert lines[0].request_id == "ifttt-req-4f1c2a"
    assert lines[0].route == URL
    assert lines[0].status == 200


def test_user_info_echoes_request_id_on_401(http, caplog):
    caplog.set_level(logging.INFO, logger="authserver.request")
    response = http.get(URL, headers={"X-Request-ID": "req-401", **bearer("nope")})
    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "req-401"
    assert [r.request_id for r in caplog.records if r.name == "authserver.request"] == ["req-401"]


def test_user_info_rejected_without_authorization(http):
    assert_invalid_token(http.get(URL, headers={"Accept": "application/json"}))


@pytest.mark.parametrize(
    "header",
    [
        "Basic d2FsdGVyOnB3",
        "Bearer",
        "Bearer ",
        "Token abc",
        "bearer",
        "Bearerabc",
        "",
    ],
)
def test_user_info_rejected_when_authorization_malformed(http, header):
    assert_invalid_token(http.get(URL, headers={"Authorization": header}))


def test_user_info_rejected_when_token_unknown(http, tokens):
    assert_invalid_token(http.get(URL, headers=bearer(tokens["access_token"] + "x")))


def test_user_info_rejected_when_token_oversized(http):
    assert_invalid_token(http.get(URL, headers=bearer("a" * 5000)))


def test_user_info_rejected_for_refresh_token(http, tokens):
    assert_invalid_token(http.get(URL, headers=bearer(tokens["refresh_token"])))


def test_user_info_rejected_at_expiry_not_before(http, user, oauth_client):
    with freeze_time(FROZEN) as frozen:
        access = make_tokens(user, oauth_client)["access_token"]
        frozen.tick(3599)
        assert http.get(URL, headers=bearer(access)).status_code == 200
        frozen.tick(1)
        assert_invalid_token(http.get(URL, headers=bearer(access)))


def test_user_info_rejected_when_family_revoked(http, tokens):
    found = revocation_service.find_token(tokens["access_token"])
    assert found is not None
    revocation_service.revoke_family(found.family_id, reason="admin")
    assert_invalid_token(http.get(URL, headers=bearer(tokens["access_token"])))


def test_user_info_rejected_when_access_token_revoked(http, oauth_client, tokens):
    found = revocation_service.find_token(tokens["access_token"])
    assert found is not None
    revocation_service.revoke_token(found, oauth_client=oauth_client)
    assert_invalid_token(http.get(URL, headers=bearer(tokens["access_token"])))


def test_user_info_rejected_when_user_disabled(http, user, tokens):
    user_service.set_disabled(user.username, disabled=True)
    assert_invalid_token(http.get(URL, headers=bearer(tokens["access_token"])))


def test_user_info_rejected_when_client_disabled(app, http, oauth_client, tokens):
    client_service.update_client(
        oauth_client.client_id,
        disabled=True,
        default_access=app.config["ACCESS_TOKEN_TTL"],
        default_grace=app.config["REFRESH_GRACE_SECONDS"],
    )
    assert_invalid_token(http.get(URL, headers=bearer(tokens["access_token"])))


def test_user_info_rejects_post(http, tokens):
    response = http.post(URL, headers=bearer(tokens["access_token"]))
    assert response.status_code == 405
    assert "errors" in response.get_json()


def test_user_info_answers_503_when_database_unreachable(tmp_path, monkeypatch, caplog):
    """An outage must never look like an invalid token (IFTTT disables Applets on 401s)."""
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path))
    # A real connection failure: nothing listens on this port.
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/authserver"
    app = create_app({**base_config(dead), "DB_TIMEOUT_SECONDS": 1})
    caplog.set_level(logging.INFO, logger="authserver")
    with app.app_context():
        response = app.test_client().get(
            URL, headers={**IFTTT_HEADERS, **bearer("any-token-at-all")}
        )
    assert response.status_code == 503
    assert response.get_json() == {
        "errors": [{"message": "The service is temporarily unavailable. Please retry."}]
    }
    assert "WWW-Authenticate" not in response.headers
    assert response.headers["Retry-After"]
    assert response.headers["X-Request-ID"] == "ifttt-req-4f1c2a"
    assert any(r.getMessage().startswith("database unavailable") for r in caplog.records)


def test_user_info_body_is_compact_sorted_json_with_a_non_ascii_name(http, oauth_client):
    user = make_user(username="zoë", name='Zoë "Z" Ünal')
    response = http.get(URL, headers=bearer(make_tokens(user, oauth_client)["access_token"]))
    assert response.status_code == 200
    assert response.get_data() == (
        b'{"data":{"id":"%s","name":"Zo\\u00eb \\"Z\\" \\u00dcnal"}}\n' % user.public_id.encode()
    )
