"""Redis down or unreachable: the limiter fails open with per-process counters.

Redis only shares rate-limit counters; it is optional for correctness, so an outage
must never turn IFTTT's calls into 500s. The "unreachable" Redis is a closed port.
"""

from __future__ import annotations

import logging
import signal
import uuid
from datetime import timedelta

import pytest
import requests
from freezegun import freeze_time
from prometheus_client import REGISTRY

from authserver.services import clients as client_service
from tests.conftest import csrf_token_of
from tests.factories import basic_auth
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user

CLOSED_PORT = "redis://127.0.0.1:1/0"
REDIS_UP = "redis://127.0.0.1:6379/0"
OUTAGE = pytest.mark.app_config(
    RATE_LIMITS="on",
    REDIS_URL=CLOSED_PORT,
    REDIS_KEY_PREFIX=f"authserver-test-{uuid.uuid4().hex}",
    RATE_LIMIT_TOKEN_FAILURES="3 per minute",
    RATE_LIMIT_LOGIN_USER="3 per minute",
    RATE_LIMIT_INTROSPECTION="1000 per minute",
)
FALLBACKS = "authserver_rate_limit_storage_errors_total"


def _fallbacks():
    return REGISTRY.get_sample_value(FALLBACKS) or 0.0


def _world():
    user = make_user()
    oauth_client, secret = make_oauth_client()
    tokens = make_tokens(user, oauth_client)
    server, server_secret = client_service.register_resource_server("shim " + uuid.uuid4().hex)
    return user, oauth_client, secret, tokens, (server.server_id, server_secret)


def _login(http, username, password):
    token = csrf_token_of(http.get("/login").get_data(as_text=True))
    return http.post(
        "/login", data={"csrf_token": token, "username": username, "password": password}
    )


@OUTAGE
def test_introspection_user_info_and_refresh_answer_200_with_redis_unreachable(http):
    _user, oauth_client, secret, tokens, shim = _world()
    introspection = http.post(
        "/oauth/introspect", data={"token": tokens["access_token"]}, headers=basic_auth(*shim)
    )
    assert introspection.status_code == 200
    assert introspection.get_json()["active"] is True
    info = http.get(
        "/ifttt/v1/user/info", headers={"Authorization": "Bearer " + tokens["access_token"]}
    )
    assert info.status_code == 200
    refreshed = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": oauth_client.client_id,
            "client_secret": secret,
        },
    )
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)


@OUTAGE
def test_failures_are_still_limited_per_process_with_redis_unreachable(http):
    user, oauth_client, _secret, _tokens, _shim = _world()
    wrong = {
        "grant_type": "refresh_token",
        "refresh_token": "x",
        "client_id": oauth_client.client_id,
        "client_secret": "wrong",
    }
    statuses = [http.post("/oauth/token", data=wrong).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    logins = [_login(http, user.username, "wrong").status_code for _ in range(4)]
    assert logins == [401, 401, 401, 429]


@OUTAGE
def test_redis_outage_warns_at_most_once_a_minute_and_is_counted(http, caplog):
    caplog.set_level(logging.WARNING, logger="authserver.limits")
    _user, oauth_client, _secret, _tokens, _shim = _world()
    wrong = {
        "grant_type": "refresh_token",
        "refresh_token": "x",
        "client_id": oauth_client.client_id,
        "client_secret": "wrong",
    }
    before = _fallbacks()
    with freeze_time("2030-01-01T00:00:00+00:00") as clock:
        for _ in range(10):
            assert http.post("/oauth/token", data=wrong).status_code in {401, 429}
            clock.tick(timedelta(seconds=5))
        warnings = [r for r in caplog.records if r.name == "authserver.limits"]
        # 50 seconds of failures: one warning; the outage is counted more than once.
        assert len(warnings) == 1
        assert "Redis" in warnings[0].getMessage()
        assert _fallbacks() - before >= 2
        clock.tick(timedelta(seconds=15))
        http.post("/oauth/token", data=wrong)
    warnings = [r for r in caplog.records if r.name == "authserver.limits"]
    assert len(warnings) == 2


@OUTAGE
def test_readyz_reports_redis_unreachable_but_stays_ready(http):
    response = http.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"
    assert response.get_json()["redis"] == "unreachable"


@pytest.mark.app_config(REDIS_URL=REDIS_UP, REDIS_KEY_PREFIX="authserver-test-ready")
def test_readyz_reports_redis_ok(http):
    assert http.get("/readyz").get_json()["redis"] == "ok"


def test_readyz_reports_redis_not_configured(http):
    assert http.get("/readyz").get_json()["redis"] == "not configured"


@pytest.mark.slow
def test_server_starts_and_serves_with_redis_unreachable(app, database_url, tmp_path):
    """gunicorn workers start with Redis down and answer IFTTT's calls, never 500."""
    from tests.system.conftest import start_server

    _user, oauth_client, secret, tokens, shim = _world()
    server = start_server(
        database_url, tmp_path, workers=1, RATE_LIMITS="on", REDIS_URL=CLOSED_PORT
    )
    try:
        base = server.base_url
        ready = requests.get(base + "/readyz", timeout=10)
        assert (ready.status_code, ready.json()["redis"]) == (200, "unreachable")
        introspection = requests.post(
            base + "/oauth/introspect",
            data={"token": tokens["access_token"]},
            auth=shim,
            timeout=10,
        )
        assert introspection.status_code == 200
        assert introspection.json()["active"] is True
        info = requests.get(
            base + "/ifttt/v1/user/info",
            headers={"Authorization": "Bearer " + tokens["access_token"]},
            timeout=10,
        )
        assert info.status_code == 200
        refreshed = requests.post(
            base + "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(oauth_client.client_id, secret),
            timeout=10,
        )
        assert refreshed.status_code == 200
        failed = requests.post(
            base + "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": "x"},
            auth=(oauth_client.client_id, "wrong"),
            timeout=10,
        )
        assert failed.status_code == 401
        assert "Redis" in server.log()
    finally:
        server.stop(signal.SIGTERM)
