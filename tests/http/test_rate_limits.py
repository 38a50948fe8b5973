"""Abuse limits: failed logins, token failures, introspection; memory and Redis storage.

Every limit test runs twice: counters in process memory and in the local Redis (with a
key prefix of its own, removed afterwards). Usernames, client ids and client addresses
are unique per test too, so no two tests ever share a counter.
"""

from __future__ import annotations

import secrets
import signal
import uuid

import pytest
import redis
import requests
from freezegun import freeze_time

from authserver import create_app
from authserver import limits
from authserver.errors import ConfigError
from authserver.limits import LIMIT_KEYS
from authserver.services import clients as client_service
from tests.conftest import base_config
from tests.conftest import csrf_token_of
from tests.factories import PASSWORD
from tests.factories import basic_auth
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user
from tests.http.test_fuzz import assert_documented

REDIS_URL = "redis://127.0.0.1:6379/0"
TINY = "3 per minute"
ROOMY = "1000 per minute"
TOO_MANY_LOGINS = "Too many attempts. Please wait a few minutes and try again."
LIMITS_ON = {
    "RATE_LIMITS": "on",
    "RATE_LIMIT_LOGIN_USER": ROOMY,
    "RATE_LIMIT_LOGIN_IP": ROOMY,
    "RATE_LIMIT_TOKEN_FAILURES": ROOMY,
    "RATE_LIMIT_CLIENT_AUTH_IP": ROOMY,
    "RATE_LIMIT_INTROSPECTION": ROOMY,
}


@pytest.fixture(params=["memory", "redis"])
def storage(request):
    """Prepend an app_config marker: limits on, plus Redis for the redis run."""
    marker = request.node.get_closest_marker("app_config")
    settings = {**LIMITS_ON, **(marker.kwargs if marker else {})}
    prefix = f"authserver-test-{uuid.uuid4().hex}"
    if request.param == "redis":
        settings.update(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=prefix)
    request.node.add_marker(pytest.mark.app_config(**settings), append=False)
    yield Storage(request.param, prefix)
    if request.param == "redis":
        _delete_keys(prefix)


class Storage:
    def __init__(self, name, prefix):
        self.name = name
        self.prefix = prefix

    def assert_counters_kept(self):
        """In the redis run, the counters really live in Redis."""
        if self.name == "redis":
            connection = redis.Redis.from_url(REDIS_URL)
            assert list(connection.scan_iter(f"{self.prefix}*"))
            connection.close()


def _delete_keys(prefix):
    connection = redis.Redis.from_url(REDIS_URL)
    keys = list(connection.scan_iter(f"{prefix}*"))
    if keys:
        connection.delete(*keys)
    connection.close()


@pytest.fixture
def app(storage, app):
    return app


@pytest.fixture
def http(app):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = _unique_address()
    return client


def _unique_address():
    a, b, c = (secrets.randbelow(254) + 1 for _ in range(3))
    return f"127.{a}.{b}.{c}"


def _username():
    return "u" + uuid.uuid4().hex[:12]


def _login(http, username, password, address=None):
    if address:
        http.environ_base["REMOTE_ADDR"] = address
    token = csrf_token_of(http.get("/login").get_data(as_text=True))
    return http.post(
        "/login", data={"csrf_token": token, "username": username, "password": password}
    )


def _retry_after(response, window=60):
    value = int(response.headers["Retry-After"])
    assert 1 <= value <= window
    return value


def _pair():
    oauth_client, secret = make_oauth_client()
    return oauth_client, secret


@pytest.mark.app_config(RATE_LIMIT_LOGIN_USER=TINY)
def test_failed_logins_limited_per_username(http, storage):
    target = make_user(username=_username())
    other = make_user(username=_username())
    for _ in range(3):
        assert _login(http, target.username, "wrong").status_code == 401
    limited = _login(http, target.username, PASSWORD)
    assert limited.status_code == 429
    _retry_after(limited)
    assert limited.mimetype == "text/html"
    html = limited.get_data(as_text=True)
    assert TOO_MANY_LOGINS in html
    assert 'name="username"' in html
    assert limited.headers["Cache-Control"] == "no-store"
    # Case and spaces do not make a fresh counter.
    assert _login(http, f"  {target.username.upper()} ", PASSWORD).status_code == 429
    # Another username from the same address still logs in.
    assert _login(http, other.username, PASSWORD).status_code == 302
    storage.assert_counters_kept()


@pytest.mark.app_config(RATE_LIMIT_LOGIN_IP=TINY)
def test_failed_logins_limited_per_address(http, storage):
    user = make_user(username=_username())
    address = _unique_address()
    for _ in range(3):
        assert _login(http, _username(), "wrong", address).status_code == 401
    limited = _login(http, user.username, PASSWORD, address)
    assert limited.status_code == 429
    _retry_after(limited)
    assert TOO_MANY_LOGINS in limited.get_data(as_text=True)
    assert _login(http, user.username, PASSWORD, _unique_address()).status_code == 302


@pytest.mark.app_config(RATE_LIMIT_LOGIN_USER=TINY, RATE_LIMIT_LOGIN_IP=TINY)
def test_successful_logins_are_not_limited(http, storage):
    user = make_user(username=_username())
    for _ in range(8):
        assert _login(http, user.username, PASSWORD).status_code == 302
        with http.session_transaction() as session:
            session.clear()


@pytest.mark.app_config(RATE_LIMIT_TOKEN_FAILURES=TINY)
def test_failed_client_authentication_limited_per_address_and_claimed_id(http, storage):
    user = make_user(username=_username())
    oauth_client, secret = _pair()
    other_client, other_secret = _pair()
    tokens = make_tokens(user, oauth_client)
    bogus = {"grant_type": "refresh_token", "refresh_token": "not-a-token"}
    wrong = basic_auth(oauth_client.client_id, "wrong")
    for _ in range(3):
        assert http.post("/oauth/token", data=bogus, headers=wrong).status_code == 401
    # Even the right secret is refused from this address now: it is cooling down.
    good = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    auth = basic_auth(oauth_client.client_id, secret)
    limited = http.post("/oauth/token", data=good, headers=auth)
    assert limited.status_code == 429
    _retry_after(limited)
    assert limited.headers["Cache-Control"] == "no-store"
    assert limited.get_json()["error"] == "slow_down"
    assert_documented("OAuthError", limited.get_json())
    # Body credentials count against the same client id.
    body_auth = {**bogus, "client_id": oauth_client.client_id, "client_secret": secret}
    assert http.post("/oauth/token", data=body_auth).status_code == 429
    # Another client id from the same address is untouched.
    other = http.post(
        "/oauth/token", data=bogus, headers=basic_auth(other_client.client_id, other_secret)
    )
    assert other.status_code == 400
    assert other.get_json()["error"] == "invalid_grant"
    storage.assert_counters_kept()


@pytest.mark.app_config(
    RATE_LIMIT_TOKEN_FAILURES=TINY,
    RATE_LIMIT_LOGIN_IP=TINY,
    RATE_LIMIT_LOGIN_USER=TINY,
    ACCESS_TOKEN_TTL=3600,
)
def test_successful_refresh_and_user_info_bursts_are_never_limited(http, storage):
    """IFTTT refreshes and asks for user info in bursts; only failures count."""
    user = make_user(username=_username())
    oauth_client, secret = _pair()
    tokens = make_tokens(user, oauth_client)
    refresh_token = tokens["refresh_token"]
    for _ in range(100):
        response = http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": oauth_client.client_id,
                "client_secret": secret,
            },
        )
        assert response.status_code == 200, response.get_json()
        refresh_token = response.get_json()["refresh_token"]
        info = http.get(
            "/ifttt/v1/user/info",
            headers={"Authorization": "Bearer " + response.get_json()["access_token"]},
        )
        assert info.status_code == 200
    # The failure budget is intact: three failures pass before the fourth is refused.
    for status in (401, 401, 401, 429):
        response = http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": "bogus",
                "client_id": oauth_client.client_id,
                "client_secret": "wrong",
            },
        )
        assert response.status_code == status


@pytest.mark.app_config(RATE_LIMIT_TOKEN_FAILURES=TINY)
def test_failed_user_info_calls_are_not_limited(http, storage):
    for _ in range(10):
        response = http.get("/ifttt/v1/user/info", headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401


@pytest.mark.app_config(RATE_LIMIT_INTROSPECTION=TINY)
def test_introspection_limited_per_resource_server(http, storage):
    server, server_secret = client_service.register_resource_server("shim " + _username())
    other, other_secret = client_service.register_resource_server("shim " + _username())
    auth = basic_auth(server.server_id, server_secret)
    for _ in range(3):
        response = http.post("/oauth/introspect", data={"token": "x"}, headers=auth)
        assert response.status_code == 200
        assert response.get_json() == {"active": False}
    limited = http.post("/oauth/introspect", data={"token": "x"}, headers=auth)
    assert limited.status_code == 429
    _retry_after(limited)
    assert limited.mimetype == "application/json"
    assert limited.headers["Cache-Control"] == "no-store"
    assert_documented("OAuthError", limited.get_json())
    response = http.post(
        "/oauth/introspect", data={"token": "x"}, headers=basic_auth(other.server_id, other_secret)
    )
    assert response.status_code == 200
    storage.assert_counters_kept()


@pytest.mark.app_config(RATE_LIMIT_INTROSPECTION=TINY)
def test_introspection_counts_survive_the_key_cache_starting_over(http, storage, app, monkeypatch):
    # One cached key at most: every call below clears the cache and builds its key again.
    monkeypatch.setattr(limits._Limits, "MAX_KEYS", 1)
    callers = [client_service.register_resource_server("shim " + _username()) for _ in range(2)]
    auths = [basic_auth(server.server_id, secret) for server, secret in callers]
    for _ in range(3):
        for auth in auths:
            response = http.post("/oauth/introspect", data={"token": "x"}, headers=auth)
            assert response.status_code == 200
    for auth in auths:
        response = http.post("/oauth/introspect", data={"token": "x"}, headers=auth)
        assert response.status_code == 429
    assert len(app.extensions[limits.EXTENSION_KEY].introspection_keys) <= 1


@pytest.mark.app_config(
    RATE_LIMITS="off",
    RATE_LIMIT_LOGIN_USER="1 per minute",
    RATE_LIMIT_LOGIN_IP="1 per minute",
    RATE_LIMIT_TOKEN_FAILURES="1 per minute",
    RATE_LIMIT_INTROSPECTION="1 per minute",
)
def test_rate_limits_off_disables_every_limit(http, storage):
    user = make_user(username=_username())
    oauth_client, secret = _pair()
    server, server_secret = client_service.register_resource_server("shim " + _username())
    for _ in range(5):
        assert _login(http, user.username, "wrong").status_code == 401
        token = http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": "bogus"},
            headers=basic_auth(oauth_client.client_id, secret),
        )
        assert token.status_code == 400
        introspection = http.post(
            "/oauth/introspect",
            data={"token": "x"},
            headers=basic_auth(server.server_id, server_secret),
        )
        assert introspection.status_code == 200
    assert _login(http, user.username, PASSWORD).status_code == 302


@pytest.mark.parametrize("key", LIMIT_KEYS)
@pytest.mark.parametrize("value", ["lots", "0 per minute", "", "10 per fortnight"])
def test_invalid_limit_stops_startup_naming_the_variable(
    database_url, tmp_path, monkeypatch, key, value
):
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=f"AUTHSERVER_{key}"):
        create_app({**base_config(database_url), key: value})


def test_invalid_limit_from_environment_stops_startup(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("AUTHSERVER_RATE_LIMIT_TOKEN_FAILURES", "often")
    with pytest.raises(ConfigError, match="AUTHSERVER_RATE_LIMIT_TOKEN_FAILURES"):
        create_app({"DATABASE_URL": database_url, "SECRET_KEY": "k" * 40})


def test_limits_accept_other_spellings(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path))
    app = create_app(
        {
            **base_config(database_url),
            "RATE_LIMIT_LOGIN_USER": "5/minute",
            "RATE_LIMIT_INTROSPECTION": "100 per 10 seconds",
        }
    )
    assert app.config["RATE_LIMIT_LOGIN_USER"] == "5/minute"


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["redis"], indirect=True)
def test_redis_counters_are_shared_by_every_worker(app, database_url, tmp_path):
    """Two gunicorn workers, one Redis: the limit holds for the deployment, not per worker."""
    from tests.system.conftest import start_server

    oauth_client, _secret = _pair()
    prefix = f"authserver-test-{uuid.uuid4().hex}"
    server = start_server(
        database_url,
        tmp_path,
        workers=2,
        RATE_LIMITS="on",
        REDIS_URL=REDIS_URL,
        REDIS_KEY_PREFIX=prefix,
        RATE_LIMIT_TOKEN_FAILURES="4 per minute",
    )
    try:
        statuses = []
        for _ in range(8):
            # A new connection each time, so both workers get requests.
            response = requests.post(
                server.base_url + "/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": "bogus"},
                auth=(oauth_client.client_id, "wrong"),
                timeout=10,
                headers={"Connection": "close"},
            )
            statuses.append(response.status_code)
        assert statuses == [401] * 4 + [429] * 4
        assert response.json()["error"] == "slow_down"
    finally:
        server.stop(signal.SIGTERM)
        _delete_keys(prefix)


@pytest.mark.app_config(RATE_LIMIT_INTROSPECTION="1 per minute")
def test_refused_introspection_is_logged_with_its_resource_server(http, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="authserver.request")
    server, server_secret = client_service.register_resource_server("shim " + _username())
    auth = basic_auth(server.server_id, server_secret)
    assert http.post("/oauth/introspect", data={"token": "x"}, headers=auth).status_code == 200
    assert http.post("/oauth/introspect", data={"token": "x"}, headers=auth).status_code == 429
    lines = [r for r in caplog.records if r.name == "authserver.request"]
    assert [(r.status, r.client_id) for r in lines[-2:]] == [
        (200, server.server_id),
        (429, server.server_id),
    ]


# Issue 13: limits keyed on what was proven, not on what was claimed.


def _wrong_secret_flood(http, path, claimed_id, address, data, count=150):
    """Post wrong secrets claiming ``claimed_id`` from one address; return the statuses."""
    http.environ_base["REMOTE_ADDR"] = address
    statuses = []
    for n in range(count):
        # Half by HTTP Basic, half in the form body: both claim the same id.
        if n % 2:
            response = http.post(path, data=data, headers=basic_auth(claimed_id, "wrong"))
        else:
            body = {**data, "client_id": claimed_id, "client_secret": "wrong"}
            response = http.post(path, data=body)
        statuses.append(response.status_code)
    return statuses


@pytest.mark.app_config(RATE_LIMIT_TOKEN_FAILURES="60 per minute")
def test_wrong_secret_flood_from_one_address_never_limits_the_real_client(http, storage):
    user = make_user(username=_username())
    oauth_client, secret = _pair()
    tokens = make_tokens(user, oauth_client)
    flood = _wrong_secret_flood(
        http,
        "/oauth/token",
        oauth_client.client_id,
        _unique_address(),
        {"grant_type": "refresh_token", "refresh_token": "guess"},
    )
    # The flooding address is refused once its budget is used up.
    assert flood.count(401) == 60
    assert flood.count(429) == 90
    http.environ_base["REMOTE_ADDR"] = _unique_address()
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": oauth_client.client_id,
            "client_secret": secret,
        },
    )
    assert response.status_code == 200, response.get_json()
    storage.assert_counters_kept()


@pytest.mark.app_config(RATE_LIMIT_TOKEN_FAILURES=TINY)
def test_wrong_secret_flood_at_revocation_limits_the_address_only(http, storage):
    oauth_client, secret = _pair()
    flood = _wrong_secret_flood(
        http, "/oauth/revoke", oauth_client.client_id, _unique_address(), {"token": "x"}, 6
    )
    assert flood == [401] * 3 + [429] * 3
    http.environ_base["REMOTE_ADDR"] = _unique_address()
    response = http.post(
        "/oauth/revoke", data={"token": "x"}, headers=basic_auth(oauth_client.client_id, secret)
    )
    assert response.status_code == 200


@pytest.mark.app_config(RATE_LIMIT_CLIENT_AUTH_IP=TINY)
def test_failed_client_authentication_limited_per_address_whatever_the_claimed_id(http, storage):
    address = _unique_address()
    http.environ_base["REMOTE_ADDR"] = address
    statuses = [
        http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": "x"},
            headers=basic_auth(f"client-{n}", "wrong"),
        ).status_code
        for n in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]
    # Another address is untouched.
    http.environ_base["REMOTE_ADDR"] = _unique_address()
    response = http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers=basic_auth("client-9", "wrong"),
    )
    assert response.status_code == 401


@pytest.mark.app_config(RATE_LIMIT_TOKEN_FAILURES=TINY, RATE_LIMIT_CLIENT_AUTH_IP=TINY)
def test_invalid_grant_bursts_of_an_authenticated_client_are_never_limited(http, storage):
    """Stale refresh tokens of users who disconnected are IFTTT's normal traffic."""
    user = make_user(username=_username())
    oauth_client, secret = _pair()
    tokens = make_tokens(user, oauth_client)
    auth = basic_auth(oauth_client.client_id, secret)
    bogus = {"grant_type": "refresh_token", "refresh_token": "stale"}
    for _ in range(20):
        response = http.post("/oauth/token", data=bogus, headers=auth)
        assert response.status_code == 400
        assert response.get_json()["error"] == "invalid_grant"
    good = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert http.post("/oauth/token", data=good, headers=auth).status_code == 200


@pytest.mark.app_config(
    RATE_LIMIT_INTROSPECTION="5 per minute", RATE_LIMIT_TOKEN_FAILURES="60 per minute"
)
def test_wrong_secret_introspection_flood_spends_nothing_of_the_shims_quota(http, storage):
    server, server_secret = client_service.register_resource_server("shim " + _username())
    flood = _wrong_secret_flood(
        http, "/oauth/introspect", server.server_id, _unique_address(), {"token": "x"}
    )
    assert 429 in flood
    assert set(flood) == {401, 429}
    http.environ_base["REMOTE_ADDR"] = _unique_address()
    auth = basic_auth(server.server_id, server_secret)
    # The whole quota is still there for the real shim.
    for _ in range(5):
        response = http.post("/oauth/introspect", data={"token": "x"}, headers=auth)
        assert response.status_code == 200
        assert response.get_json() == {"active": False}
    assert http.post("/oauth/introspect", data={"token": "x"}, headers=auth).status_code == 429


def _full_width(text):
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


@pytest.mark.app_config(RATE_LIMIT_LOGIN_USER="10 per 5 minutes")
def test_login_limit_counts_full_width_spellings_as_the_same_username(http, storage):
    """The per-username bucket uses the lookup's normalization (NFKC), then casefold."""
    username = "walter" + uuid.uuid4().hex[:8]
    make_user(username=username)
    for _ in range(15):
        _login(http, username, "wrong", _unique_address())
    full_width = _full_width(username)
    assert full_width != username
    response = _login(http, full_width, PASSWORD, _unique_address())
    assert response.status_code == 429


@pytest.mark.app_config(RATE_LIMIT_TOKEN_FAILURES=TINY)
def test_wrong_secret_flood_at_the_test_token_endpoint_limits_the_address_only(http, storage):
    """POST /shim/test-token guards a resource server's secret like introspection does."""
    server, server_secret = client_service.register_resource_server("shim " + _username())
    flood = _wrong_secret_flood(
        http, "/shim/test-token", server.server_id, _unique_address(), {}, 6
    )
    assert flood == [401] * 3 + [429] * 3
    # The real shim, from another address, is authenticated (and refused only because
    # no admin allowed it to mint test tokens).
    http.environ_base["REMOTE_ADDR"] = _unique_address()
    response = http.post("/shim/test-token", headers=basic_auth(server.server_id, server_secret))
    assert response.status_code == 403


@pytest.mark.parametrize("storage", ["memory"], indirect=True)
@pytest.mark.app_config(RATE_LIMIT_CLIENT_AUTH_IP="3 per hour")
def test_client_auth_cooldown_lasts_the_longest_window_to_the_second(http, storage):
    """Per-process counters are skipped only once the longest window has ended."""
    oauth_client, secret = _pair()
    bogus = {"grant_type": "refresh_token", "refresh_token": "not-a-token"}
    wrong = basic_auth(oauth_client.client_id, "wrong")
    good = basic_auth(oauth_client.client_id, secret)
    with freeze_time("2030-01-01T00:00:00+00:00") as frozen:
        for _ in range(3):
            assert http.post("/oauth/token", data=bogus, headers=wrong).status_code == 401
        # The per-address hour, not the per-client-id minute, sets the cooldown.
        frozen.tick(3599)
        assert http.post("/oauth/token", data=bogus, headers=good).status_code == 429
        frozen.tick(1)
        assert http.post("/oauth/token", data=bogus, headers=good).status_code == 400
