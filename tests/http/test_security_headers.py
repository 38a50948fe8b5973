"""Security headers, no-store caching, request size limits and duplicate parameters."""

from __future__ import annotations

import pytest

from authserver.services import clients as client_service
from tests.conftest import csrf_token_of
from tests.factories import IFTTT_REDIRECT
from tests.factories import authorize_url
from tests.factories import basic_auth
from tests.factories import make_tokens
from tests.http.test_fuzz import assert_documented


def _directives(response):
    policy = response.headers["Content-Security-Policy"]
    return {part.strip().split(" ", 1)[0]: part.strip() for part in policy.split(";")}


def assert_html_hardened(response):
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    directives = _directives(response)
    assert directives["frame-ancestors"] == "frame-ancestors 'none'"
    assert directives["default-src"] == "default-src 'none'"
    assert "script-src" not in directives  # default-src 'none': no script at all
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
def html_pages(http, user, oauth_client, login_as):
    """Every kind of HTML page the server renders, as (name, response)."""
    pages = [
        ("login", http.get("/login")),
        (
            "login failed",
            http.post(
                "/login",
                data={
                    "csrf_token": csrf_token_of(http.get("/login").get_data(as_text=True)),
                    "username": "walter",
                    "password": "wrong",
                },
            ),
        ),
        ("login without csrf", http.post("/login", data={"username": "x", "password": "y"})),
        ("authorize error", http.get(authorize_url("no-such-client"))),
        ("not found", http.get("/no/such/page")),
        ("login wrong method", http.put("/login")),
    ]
    login_as(user)
    pages += [
        ("consent", http.get(authorize_url(oauth_client.client_id))),
        ("connected apps", http.get("/account/apps")),
    ]
    return pages


def test_every_html_page_carries_the_security_headers(html_pages):
    statuses = {name: response.status_code for name, response in html_pages}
    assert statuses == {
        "login": 200,
        "login failed": 401,
        "login without csrf": 400,
        "authorize error": 400,
        "not found": 404,
        "login wrong method": 405,
        "consent": 200,
        "connected apps": 200,
    }
    for name, response in html_pages:
        try:
            assert_html_hardened(response)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None


def test_html_pages_load_nothing_inline(html_pages):
    for name, response in html_pages:
        html = response.get_data(as_text=True)
        assert "<script" not in html, name
        assert "<style" not in html, name
        assert " style=" not in html, name
        assert " on" + "click=" not in html, name


def test_static_stylesheet_is_allowed_by_the_policy(http):
    response = http.get("/static/style.css")
    response.close()
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "style-src 'self'" in _directives(http.get("/login"))["style-src"]


@pytest.mark.app_config(ISSUER="https://auth.example.com")
def test_hsts_sent_when_issuer_is_https(http):
    for path in ("/login", "/healthz", "/.well-known/oauth-authorization-server"):
        hsts = http.get(path, base_url="https://auth.example.com").headers[
            "Strict-Transport-Security"
        ]
        max_age = int(hsts.split("max-age=")[1].split(";")[0])
        assert max_age >= 31536000


def test_hsts_not_sent_when_issuer_is_http(http):
    for path in ("/login", "/healthz", "/.well-known/oauth-authorization-server"):
        assert "Strict-Transport-Security" not in http.get(path).headers


def test_api_responses_are_not_cacheable(http, user, oauth_client, client_secret):
    tokens = make_tokens(user, oauth_client)
    server, server_secret = client_service.register_resource_server("shim")
    auth = basic_auth(oauth_client.client_id, client_secret)
    responses = {
        "token 200": http.post(
            "/oauth/token",
            headers=auth,
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        ),
        "token 400": http.post("/oauth/token", headers=auth, data={"grant_type": "nope"}),
        "token 401": http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token"},
            headers=basic_auth("ifttt", "wrong"),
        ),
        "introspect 200": http.post(
            "/oauth/introspect",
            data={"token": tokens["access_token"]},
            headers=basic_auth(server.server_id, server_secret),
        ),
        "introspect 401": http.post("/oauth/introspect", data={"token": "x"}),
        "revoke 200": http.post("/oauth/revoke", data={"token": "x"}, headers=auth),
        "revoke 401": http.post("/oauth/revoke", data={"token": "x"}),
        "user info 200": http.get(
            "/ifttt/v1/user/info", headers={"Authorization": "Bearer " + tokens["access_token"]}
        ),
        "user info 401": http.get("/ifttt/v1/user/info"),
    }
    for name, response in responses.items():
        assert str(response.status_code) in name, (name, response.get_data())
        assert response.headers.get("Cache-Control") == "no-store", name
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.mimetype == "application/json", name


@pytest.mark.app_config(MAX_CONTENT_LENGTH=1024)
@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_oversized_body_is_413_json(http, path):
    response = http.post(path, data={"token": "x" * 2000, "grant_type": "refresh_token"})
    assert response.status_code == 413
    assert response.get_json()["error"] == "invalid_request"
    assert_documented("OAuthError", response.get_json())
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.app_config(MAX_CONTENT_LENGTH=1024)
def test_body_within_the_limit_is_accepted(http, oauth_client, client_secret):
    response = http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "x" * 800},
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_default_body_limit_is_64_kib(http):
    assert http.post("/oauth/token", data={"a": "x" * 70000}).status_code == 413
    assert http.post("/oauth/token", data={"a": "x" * 60000}).status_code in (400, 401)


@pytest.mark.app_config(MAX_CONTENT_LENGTH=1024)
def test_oversized_login_is_413_page(http):
    response = http.post("/login", data={"username": "x" * 2000, "password": "y"})
    assert response.status_code == 413
    assert_html_hardened(response)


@pytest.mark.parametrize("field", ["grant_type", "refresh_token", "client_id", "client_secret"])
def test_token_parameter_given_twice_is_invalid_request(
    http, user, oauth_client, client_secret, field
):
    tokens = make_tokens(user, oauth_client)
    data = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens["refresh_token"]),
        ("client_id", oauth_client.client_id),
        ("client_secret", client_secret),
    ]
    value = dict(data)[field]
    response = http.post("/oauth/token", data=_multi([*data, (field, value)]))
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert field in body["error_description"]
    # The refresh token was not consumed by the rejected request.
    again = http.post("/oauth/token", data=_multi(data))
    assert again.status_code == 200


def test_token_parameter_in_query_and_body_is_invalid_request(
    http, user, oauth_client, client_secret
):
    tokens = make_tokens(user, oauth_client)
    response = http.post(
        "/oauth/token?grant_type=authorization_code",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
        },
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/oauth/revoke", "/oauth/introspect"])
def test_token_given_twice_is_invalid_request(http, user, oauth_client, client_secret, path):
    tokens = make_tokens(user, oauth_client)
    response = http.post(
        path,
        data=_multi([("token", tokens["access_token"]), ("token", "other")]),
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert_documented("OAuthError", response.get_json())
    # Nothing was revoked.
    info = http.get(
        "/ifttt/v1/user/info", headers={"Authorization": "Bearer " + tokens["access_token"]}
    )
    assert info.status_code == 200


def test_duplicate_parameter_name_that_is_not_printable_is_not_echoed(http):
    response = http.post(
        "/oauth/token", data=_multi([('gr\u00e4nt"\\', "a"), ('gr\u00e4nt"\\', "b")])
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body == {
        "error": "invalid_request",
        "error_description": "A parameter was given more than once.",
    }


@pytest.mark.parametrize("field", ["client_id", "redirect_uri", "state", "response_type", "scope"])
def test_authorize_parameter_given_twice_shows_error_page_without_redirect(
    http, user, oauth_client, login_as, field
):
    login_as(user)
    url = authorize_url(oauth_client.client_id)
    values = {
        "client_id": oauth_client.client_id,
        "redirect_uri": IFTTT_REDIRECT,
        "state": "abc",
        "response_type": "code",
        "scope": "ifttt",
    }
    response = http.get(f"{url}&{field}={values[field]}")
    assert response.status_code == 400
    assert "Location" not in response.headers
    html = response.get_data(as_text=True)
    assert "invalid_request" in html
    assert_html_hardened(response)


def _multi(pairs):
    from werkzeug.datastructures import MultiDict

    return MultiDict(pairs)


def test_json_response_carries_the_headers_in_order(http):
    response = http.get("/healthz", headers={"X-Request-ID": "order-1"})
    assert list(response.headers.items()) == [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(response.get_data()))),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Request-ID", "order-1"),
    ]


@pytest.mark.app_config(ISSUER="https://auth.example.com")
def test_api_response_carries_hsts_and_no_store_in_order(app, http):
    app.add_url_rule("/ifttt/plain", view_func=lambda: {"ok": True})
    response = http.get(
        "/ifttt/plain", headers={"X-Request-ID": "order-2"}, base_url="https://auth.example.com"
    )
    assert list(response.headers.items())[2:] == [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
        ("Cache-Control", "no-store"),
        ("X-Request-ID", "order-2"),
    ]


@pytest.mark.app_config(ISSUER="https://auth.example.com")
def test_headers_a_view_sets_are_kept_or_replaced_as_before(app, http):
    def own_headers():
        return (
            '{"ok": true}',
            200,
            {
                "Content-Type": "application/json",
                "x-content-type-options": "nosniff-too",
                "Referrer-Policy": "same-origin",
                "Cache-Control": "max-age=5",
                "Strict-Transport-Security": "max-age=1",
                "X-Request-ID": "from-the-view",
            },
        )

    app.add_url_rule("/oauth/own-headers", view_func=own_headers)
    response = http.get(
        "/oauth/own-headers",
        headers={"X-Request-ID": "caller-1"},
        base_url="https://auth.example.com",
    )
    # Kept: a view's own choice; replaced: HSTS and the request id are ours.
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff-too"]
    assert response.headers.getlist("Referrer-Policy") == ["same-origin"]
    assert response.headers.getlist("Cache-Control") == ["max-age=5"]
    assert response.headers.getlist("Strict-Transport-Security") == [
        "max-age=31536000; includeSubDomains"
    ]
    assert response.headers.getlist("X-Request-ID") == ["caller-1"]
