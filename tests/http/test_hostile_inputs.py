"""Hostile input on every endpoint: never a 5xx, errors in the endpoint's own shape,
and HTML that escapes whatever it echoes."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.datastructures import MultiDict

from authserver.services import clients as client_service
from tests.conftest import csrf_token_of
from tests.conftest import log_in
from tests.factories import IFTTT_REDIRECT
from tests.factories import PASSWORD
from tests.factories import authorize_url
from tests.factories import basic_auth
from tests.factories import make_confidential_client
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user
from tests.factories import query_of
from tests.http.test_fuzz import assert_documented
from tests.http.test_fuzz import assert_documented_error

SCRIPT = '<script>alert("pwned")</script>'
TEN_KB = "A" * 10240
SQL = "' OR '1'='1' --; DROP TABLE users; --"
FORM = "application/x-www-form-urlencoded"
FIELDS = (
    "grant_type",
    "code",
    "refresh_token",
    "client_id",
    "client_secret",
    "redirect_uri",
    "token",
    "token_type_hint",
    "username",
    "password",
    "next",
    "decision",
    "state",
    "response_type",
    "scope",
)

# (method, path, kind): kind says which error shape the endpoint owes its callers.
ENDPOINTS = [
    ("GET", "/oauth/authorize", "html"),
    ("POST", "/oauth/authorize", "html"),
    ("GET", "/login", "html"),
    ("POST", "/login", "html"),
    ("POST", "/logout", "html"),
    ("POST", "/oauth/token", "oauth"),
    ("POST", "/oauth/revoke", "oauth"),
    ("POST", "/oauth/introspect", "oauth"),
    ("GET", "/ifttt/v1/user/info", "ifttt"),
    ("GET", "/.well-known/oauth-authorization-server", "oauth"),
    ("GET", "/openapi.json", "oauth"),
    ("GET", "/", "html"),
    ("GET", "/account/apps", "html"),
    ("POST", "/account/apps/revoke", "html"),
]


def _fields(value):
    return dict.fromkeys(FIELDS, value)


# name -> (query string, request kwargs); a dict body gets a valid CSRF token added.
PAYLOADS: dict[str, tuple[str, dict[str, Any]]] = {
    "empty body": ("", {"data": b"", "content_type": FORM}),
    "huge body": ("", {"data": b"token=" + b"x" * 200_000, "content_type": FORM}),
    "json instead of form": (
        "",
        {"data": json.dumps(_fields("x")), "content_type": "application/json"},
    ),
    "invalid utf-8 bytes": (
        "",
        {
            "data": b"&".join(f.encode() + b"=\xff\xfe\xc3\x28" for f in FIELDS),
            "content_type": FORM,
        },
    ),
    "invalid utf-8 escapes": (
        "",
        {"data": "&".join(f"{f}=%ff%fe%c3%28" for f in FIELDS), "content_type": FORM},
    ),
    "nul bytes": ("", {"data": _fields("wal\x00ter")}),
    "10 kB parameters": ("", {"data": _fields(TEN_KB)}),
    "sql fragments": ("", {"data": _fields(SQL)}),
    "html fragments": ("", {"data": _fields(SCRIPT)}),
    "unicode": ("", {"data": _fields("\u202e\uff37\uff41\uff4c\uff54\uff45\uff52\u200b🦄")}),
    "broken multipart": (
        "",
        {
            "data": b"--zz\r\nContent-Disposition: form-data; name=",
            "content_type": "multipart/form-data; boundary=zz",
        },
    ),
    "binary body": ("", {"data": bytes(range(256)), "content_type": "application/octet-stream"}),
    "query invalid utf-8": ("client_id=%ff%fe&state=%c3%28&next=%ff&redirect_uri=%ff", {}),
    "query nul": ("client_id=%00&state=%00&next=/%00&redirect_uri=%00&response_type=%00", {}),
    "query html": (
        f"client_id={SCRIPT}&state={SCRIPT}&next=/{SCRIPT}&scope={SCRIPT}"
        f"&redirect_uri={SCRIPT}&response_type=code",
        {},
    ),
    "query 10 kB": (f"client_id={TEN_KB}&state={TEN_KB}&next=/{TEN_KB}", {}),
    "query sql": (f"client_id={SQL}&state={SQL}&redirect_uri={SQL}", {}),
}


@pytest.fixture
def world(app, user, oauth_client, client_secret):
    """A user with live tokens, so hostile input meets real rows."""
    tokens = make_tokens(user, oauth_client)
    return {"user": user, "tokens": tokens}


def _csrf(http):
    return csrf_token_of(http.get("/login").get_data(as_text=True))


def assert_sane(kind, path, response, context):
    """No 5xx, the endpoint's own error shape, nothing echoed unescaped."""
    body = response.get_data(as_text=True)
    assert response.status_code < 500, (context, response.status_code, body[:300])
    assert "<script>" not in body, context
    if kind == "html":
        if response.status_code != 302:
            assert response.mimetype == "text/html", context
    elif response.status_code >= 400:
        try:
            assert_documented_error(path, response)
        except Exception as error:
            raise AssertionError(f"{context}: {error}") from None


@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "logged-in"])
@pytest.mark.parametrize(
    ("method", "path", "kind"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS]
)
def test_hostile_payloads_never_5xx(http, world, method, path, kind, logged_in):
    if logged_in:
        log_in(http, world["user"])
    for name, (query, kwargs) in PAYLOADS.items():
        kwargs = dict(kwargs)
        if isinstance(kwargs.get("data"), dict) and method == "POST":
            kwargs["data"] = {**kwargs["data"], "csrf_token": _csrf(http)}
        url = f"{path}?{query}" if query else path
        response = http.open(url, method=method, **kwargs)
        assert_sane(kind, path, response, f"{method} {path} {name}")
        if name == "huge body" and method == "POST":
            assert response.status_code == 413, path
    # However hostile the input, nobody got logged in by it.
    if not logged_in:
        with http.session_transaction() as session:
            assert "_user_id" not in session


API_METHODS = [
    ("/oauth/token", ["GET", "PUT", "DELETE", "PATCH"]),
    ("/oauth/revoke", ["GET", "PUT", "DELETE", "PATCH"]),
    ("/oauth/introspect", ["GET", "PUT", "DELETE", "PATCH"]),
    ("/ifttt/v1/user/info", ["POST", "PUT", "DELETE", "PATCH"]),
    ("/.well-known/oauth-authorization-server", ["POST", "PUT", "DELETE", "PATCH"]),
    ("/openapi.json", ["POST", "PUT", "DELETE"]),
]


@pytest.mark.parametrize(("path", "methods"), API_METHODS, ids=[p for p, _ in API_METHODS])
def test_wrong_method_on_api_is_405_json(http, path, methods):
    for method in methods:
        response = http.open(path, method=method, data={"token": "x"})
        assert response.status_code == 405, (method, path)
        assert response.headers["Allow"]
        assert method not in response.headers["Allow"].split(", ")
        assert_documented_error(path, response)


@pytest.mark.parametrize("path", ["/login", "/oauth/authorize", "/account/apps", "/logout"])
def test_wrong_method_on_pages_is_405_page(http, path):
    response = http.open(path, method="DELETE")
    assert response.status_code == 405
    assert response.mimetype == "text/html"


def _basic_raw(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


MALFORMED_BASIC = {
    "overlong": {"Authorization": "Basic " + "QUFB" * 5000},
    "not base64": {"Authorization": "Basic !!!not*base64???"},
    "no colon": _basic_raw(b"ifttt"),
    "empty secret": _basic_raw(b"ifttt:"),
    "empty id": _basic_raw(b":secret"),
    "invalid utf-8": _basic_raw(b"\xff\xfe:\xc3\x28"),
    "nul in id": _basic_raw(b"if\x00ttt:secret"),
    "newline in id": _basic_raw(b"if\nttt:secret"),
    "scheme only": {"Authorization": "Basic"},
    "scheme and space": {"Authorization": "Basic "},
    "padding only": {"Authorization": "Basic ===="},
}


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_malformed_basic_auth_is_401_invalid_client(http, world, oauth_client, client_secret, path):
    # Valid body credentials do not rescue a broken header: one method per request.
    data = {
        "grant_type": "refresh_token",
        "refresh_token": world["tokens"]["refresh_token"],
        "token": world["tokens"]["access_token"],
        "client_id": oauth_client.client_id,
        "client_secret": client_secret,
    }
    for case, headers in MALFORMED_BASIC.items():
        response = http.post(path, data=data, headers=headers)
        assert response.status_code == 401, (case, response.get_json())
        assert response.get_json()["error"] == "invalid_client", case
        assert response.headers["WWW-Authenticate"].startswith("Basic"), case
        assert_documented_error(path, response)
    # The refresh token survived every attempt.
    assert http.post("/oauth/token", data=data).status_code in (200, 400)


OTHER_AUTHORIZATION = {
    "overlong bearer": "Bearer " + "A" * 20000,
    "bearer with nul": "Bearer abc\x00def",
    "bearer empty": "Bearer ",
    "bearer twice": "Bearer a Bearer b",
    "unknown scheme": "Digest username=ifttt",
    "latin-1 bytes": "Bearer caf\xe9",
    "sql": f"Bearer {SQL}",
    "html": f"Bearer {SCRIPT}",
}


def test_hostile_authorization_headers_never_5xx(http, world):
    for case, value in OTHER_AUTHORIZATION.items():
        headers = {"Authorization": value}
        info = http.get("/ifttt/v1/user/info", headers=headers)
        assert info.status_code == 401, case
        assert_documented_error("/ifttt/v1/user/info", info)
        for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
            response = http.post(
                path,
                data={"grant_type": "refresh_token", "token": "x", "refresh_token": "x"},
                headers=headers,
            )
            assert response.status_code in (400, 401), (case, path, response.get_json())
            assert_documented_error(path, response)


# Credentials tricks: mixing, swapping and smuggling client identities.


def test_basic_and_body_naming_different_clients_is_rejected(
    http, world, oauth_client, client_secret
):
    other, _ = make_oauth_client()
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": world["tokens"]["refresh_token"],
            "client_id": other.client_id,
        },
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert "client_id" in response.get_json()["error_description"]


def test_basic_and_body_with_different_secrets_is_rejected(
    http, world, oauth_client, client_secret
):
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": world["tokens"]["refresh_token"],
            "client_secret": "guess",
        },
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_basic_with_matching_body_client_id_is_accepted(http, world, oauth_client, client_secret):
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": world["tokens"]["refresh_token"],
            "client_id": oauth_client.client_id,
        },
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 200


def test_basic_credentials_are_form_urlencoded(http, app, user):
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding."""
    oauth_client, secret = make_oauth_client(client_id="odd%id")
    tokens = make_tokens(user, oauth_client)
    raw = f"odd%25id:{secret}".encode()
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
        },
        headers=_basic_raw(raw),
    )
    assert response.status_code == 200, response.get_json()


def test_client_id_with_another_clients_secret_is_invalid_client(http, world, oauth_client):
    _other, other_secret = make_confidential_client()
    for headers, data in (
        (basic_auth(oauth_client.client_id, other_secret), {}),
        ({}, {"client_id": oauth_client.client_id, "client_secret": other_secret}),
    ):
        response = http.post(
            "/oauth/token",
            headers=headers,
            data={
                "grant_type": "refresh_token",
                "refresh_token": world["tokens"]["refresh_token"],
                **data,
            },
        )
        assert response.status_code == 401
        assert response.get_json()["error"] == "invalid_client"


def test_confidential_client_without_secret_is_invalid_client(http, world, oauth_client):
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": world["tokens"]["refresh_token"],
            "client_id": oauth_client.client_id,
        },
    )
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_other_clients_refresh_token_is_invalid_grant(http, world):
    other, other_secret = make_confidential_client()
    response = http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": world["tokens"]["refresh_token"]},
        headers=basic_auth(other.client_id, other_secret),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_other_client_cannot_introspect_or_revoke_a_token(http, world):
    other, other_secret = make_confidential_client()
    auth = basic_auth(other.client_id, other_secret)
    access = world["tokens"]["access_token"]
    introspection = http.post("/oauth/introspect", data={"token": access}, headers=auth)
    assert introspection.get_json() == {"active": False}
    assert http.post("/oauth/revoke", data={"token": access}, headers=auth).status_code == 200
    info = http.get("/ifttt/v1/user/info", headers={"Authorization": "Bearer " + access})
    assert info.status_code == 200


def test_client_credentials_do_not_work_as_resource_server(http, world):
    """A resource server id equal to nothing, with a client's secret, gets nothing."""
    server, server_secret = client_service.register_resource_server("shim")
    response = http.post(
        "/oauth/introspect",
        data={"token": world["tokens"]["access_token"]},
        headers=basic_auth(server.server_id, server_secret + "x"),
    )
    assert response.status_code == 401


@pytest.mark.parametrize("where", ["query", "form", "refresh token", "basic", "cookie"])
def test_user_info_accepts_the_access_token_only_as_bearer(http, world, where):
    access, refresh = world["tokens"]["access_token"], world["tokens"]["refresh_token"]
    if where == "query":
        response = http.get(f"/ifttt/v1/user/info?access_token={access}")
    elif where == "form":
        response = http.open("/ifttt/v1/user/info", method="GET", data={"access_token": access})
    elif where == "refresh token":
        response = http.get("/ifttt/v1/user/info", headers={"Authorization": "Bearer " + refresh})
    elif where == "basic":
        response = http.get("/ifttt/v1/user/info", headers=basic_auth(access, "x"))
    else:
        http.set_cookie("access_token", access)
        response = http.get("/ifttt/v1/user/info")
    assert response.status_code == 401
    assert_documented_error("/ifttt/v1/user/info", response)


# Authorize: redirect URIs, echoes, escaping.


UNREGISTERED_REDIRECTS = [
    IFTTT_REDIRECT + "#fragment",
    IFTTT_REDIRECT + "/",
    IFTTT_REDIRECT.upper(),
    IFTTT_REDIRECT + "?extra=1",
    IFTTT_REDIRECT.replace("https://", "http://"),
    "https://evil.example/" + IFTTT_REDIRECT,
    "javascript:alert(1)//" + IFTTT_REDIRECT,
    "//evil.example",
    IFTTT_REDIRECT + "\x00",
    IFTTT_REDIRECT + "%23x",
]


@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "logged-in"])
def test_unregistered_redirect_uri_shows_error_page_never_redirects(
    http, user, oauth_client, login_as, logged_in
):
    if logged_in:
        login_as(user)
    for redirect_uri in UNREGISTERED_REDIRECTS:
        response = http.get(authorize_url(oauth_client.client_id, redirect_uri=redirect_uri))
        assert response.status_code == 400, redirect_uri
        assert "Location" not in response.headers, redirect_uri
        assert response.mimetype == "text/html"
        # The page names the problem without repeating the attacker's URI.
        assert "evil.example" not in response.get_data(as_text=True), redirect_uri


def test_authorize_error_page_escapes_client_id_and_state(http, user, login_as):
    login_as(user)
    response = http.get(authorize_url(SCRIPT, state=SCRIPT, redirect_uri=SCRIPT, scope=SCRIPT))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "<script>" not in html
    assert "alert(" not in html or "&lt;script&gt;" in html


def test_consent_page_escapes_state_and_client_name(http, user, login_as):
    oauth_client, _ = make_oauth_client(name=SCRIPT)
    login_as(user)
    response = http.get(authorize_url(oauth_client.client_id, state=SCRIPT))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html  # the name is shown, escaped
    # Allowing still hands the state back intact to the client.
    response = http.post(
        authorize_url(oauth_client.client_id, state=SCRIPT),
        data={"csrf_token": csrf_token_of(html), "decision": "allow"},
    )
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["state"] == SCRIPT


def test_connected_apps_page_escapes_client_name(http, user, login_as, get_code):
    oauth_client, _ = make_oauth_client(name=SCRIPT)
    get_code(user, oauth_client)
    login_as(user)
    html = http.get("/account/apps").get_data(as_text=True)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_login_page_escapes_next_and_username(http):
    page = http.get(f"/login?next=/{SCRIPT}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<script>" not in html
    response = http.post(
        "/login",
        data={
            "csrf_token": csrf_token_of(html),
            "username": SCRIPT,
            "password": "x",
            "next": "/" + SCRIPT,
        },
    )
    assert response.status_code == 401
    assert "<script>" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "/%0d%0aLocation:%20https://evil.example",
        "/\r\nLocation: https://evil.example",
    ],
)
def test_login_never_redirects_off_site(http, user, next_url):
    token = csrf_token_of(http.get("/login").get_data(as_text=True))
    response = http.post(
        "/login",
        data={"csrf_token": token, "username": "walter", "password": PASSWORD, "next": next_url},
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.netloc in ("", "localhost")
    assert location.path.startswith("/")
    assert not location.path.startswith("//")
    assert "\n" not in response.headers["Location"]


# Unicode usernames.


def test_unicode_usernames_log_in(http, app):
    for username in ("zoë", "Ζωή", "用户", "user🦄"):
        make_user(username=username)
        token = csrf_token_of(http.get("/login").get_data(as_text=True))
        response = http.post(
            "/login", data={"csrf_token": token, "username": username, "password": PASSWORD}
        )
        assert response.status_code == 302, username
        with http.session_transaction() as session:
            session.clear()


def test_decomposed_unicode_username_matches_composed_one(http, app):
    make_user(username="zo\u00eb")
    token = csrf_token_of(http.get("/login").get_data(as_text=True))
    response = http.post(
        "/login", data={"csrf_token": token, "username": "zoe\u0308", "password": PASSWORD}
    )
    assert response.status_code == 302


def test_lookalike_usernames_do_not_log_in_as_someone_else(http, user):
    for username in (
        "walter\u200b",
        "\u202ewalter",
        "walter\x00",
        "wa\u0000lter",
        "w\u0430lter",
        "WALTER",
    ):
        token = csrf_token_of(http.get("/login").get_data(as_text=True))
        response = http.post(
            "/login", data={"csrf_token": token, "username": username, "password": PASSWORD}
        )
        assert response.status_code == 401, repr(username)
        with http.session_transaction() as session:
            assert "_user_id" not in session


# Account pages.


def test_disconnect_with_hostile_client_id_is_4xx(http, user, login_as):
    login_as(user)
    token = csrf_token_of(http.get("/account/apps").get_data(as_text=True))
    for client_id in ("", "\x00", TEN_KB, SQL, SCRIPT, "no-such-client", "ifttt\x00"):
        response = http.post(
            "/account/apps/revoke", data={"csrf_token": token, "client_id": client_id}
        )
        assert response.status_code in (400, 404), repr(client_id[:20])
        assert response.mimetype == "text/html"
        assert "<script>" not in response.get_data(as_text=True)


def test_query_and_form_duplicates_on_token_endpoint_never_5xx(http):
    response = http.post(
        "/oauth/token?client_id=a&client_id=b",
        data=MultiDict([("grant_type", "x"), ("grant_type", "y")]),
    )
    assert response.status_code == 400
    assert_documented("OAuthError", response.get_json())


UNKNOWN_PATHS = {
    "/oauth/nothing-here": "json",
    "/oauth/authorize/extra": "json",
    "/.well-known/nothing-here": "json",
    "/shim/nothing-here": "json",
    "/ifttt/v1/nothing-here": "ifttt",
    "/healthzz": "json",
    "/nothing-here": "page",
    "/oauth": "page",
    "/account/nothing-here": "page",
}


@pytest.mark.parametrize(("path", "shape"), UNKNOWN_PATHS.items(), ids=list(UNKNOWN_PATHS))
def test_unknown_path_is_404_in_the_format_of_its_prefix(http, path, shape):
    """A request that matched no route is answered in the format its path prefix owns."""
    response = http.get(path)
    assert response.status_code == 404
    if shape == "page":
        assert response.mimetype == "text/html"
    elif shape == "ifttt":
        (error,) = response.get_json()["errors"]
        assert list(response.get_json()) == ["errors"]
        assert error["message"]
    else:
        assert response.get_json()["error"] == "not_found"
        assert response.headers["Cache-Control"] == "no-store"
