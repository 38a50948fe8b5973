"""The example shim (in process) against a real authserver process."""

import importlib.util
import logging
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pytest
from freezegun import freeze_time

from authserver.services import clients as client_service
from authserver.services import tokens as token_service
from authserver.shim import IntrospectionVerifier
from tests.factories import make_tokens
from tests.system.conftest import start_server

pytestmark = pytest.mark.slow

SERVICE_KEY = "service-key-" + "k" * 40
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shim" / "app.py"
TRIGGER = "/ifttt/v1/triggers/new_thing"
FIELDS = {"triggerFields": {"topic": "news"}}


def load_example():
    spec = importlib.util.spec_from_file_location("example_shim", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return load_example()


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory):
    """One server for the module's tests that leave it running (startup is slow)."""
    process = start_server(database_url, tmp_path_factory.mktemp("shim-server"), workers=2)
    yield process
    process.stop()


@pytest.fixture
def credentials(app):
    resource_server, secret = client_service.register_resource_server("Example shim")
    return resource_server.server_id, secret


@pytest.fixture
def tokens(user, oauth_client):
    return make_tokens(user, oauth_client)


@pytest.fixture
def make_shim(app, example, server, credentials, user, oauth_client):
    def issue_test_token():
        # The shim's request has its own app context; the authserver's is separate.
        with app.app_context():
            return make_tokens(user, oauth_client)["access_token"]

    def _make(base_url=None, **overrides):
        settings = {
            "introspection_url": (base_url or server.base_url) + "/oauth/introspect",
            "server_id": credentials[0],
            "secret": credentials[1],
            "service_key": SERVICE_KEY,
            # As `authserver tokens issue` would: a fresh, committed token per test run.
            "test_access_token": issue_test_token,
            "cache_seconds": 0,
            "timeout": 5.0,
        }
        settings.update(overrides)
        return example.create_app(**settings).test_client()

    return _make


def bearer(token):
    return {"Authorization": f"Bearer {token}", "X-Request-ID": "shim-test"}


def assert_ifttt_401(response):
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.get_json()["errors"][0]["message"]


def test_shim_status_checks_service_key(make_shim):
    shim = make_shim()
    ok = shim.get("/ifttt/v1/status", headers={"IFTTT-Service-Key": SERVICE_KEY})
    assert ok.status_code == 200
    assert (
        shim.get("/ifttt/v1/status", headers={"IFTTT-Channel-Key": SERVICE_KEY}).status_code == 200
    )
    for headers in ({}, {"IFTTT-Service-Key": SERVICE_KEY + "x"}, {"IFTTT-Service-Key": ""}):
        response = shim.get("/ifttt/v1/status", headers=headers)
        assert response.status_code == 401
        assert "errors" in response.get_json()


def test_shim_test_setup_token_works_on_trigger_at_once(make_shim, user):
    shim = make_shim()
    assert shim.post("/ifttt/v1/test/setup").status_code == 401
    setup = shim.post("/ifttt/v1/test/setup", headers={"IFTTT-Service-Key": SERVICE_KEY})
    assert setup.status_code == 200
    assert setup.headers["Content-Type"] == "application/json; charset=utf-8"
    data = setup.get_json()["data"]
    fields = data["samples"]["triggers"]["new_thing"]
    response = shim.post(
        TRIGGER, json={"triggerFields": fields}, headers=bearer(data["accessToken"])
    )
    assert response.status_code == 200
    items = response.get_json()["data"]
    assert len(items) >= 3
    timestamps = [item["meta"]["timestamp"] for item in items]
    assert timestamps == sorted(timestamps, reverse=True)
    assert all(item["meta"]["id"].startswith(user.public_id) for item in items)


def test_shim_trigger_honours_limit_and_ignores_extra_data(make_shim, tokens):
    shim = make_shim()
    for limit, expected in ((0, 0), (1, 1), (3, 3)):
        response = shim.post(
            TRIGGER,
            json={**FIELDS, "limit": limit, "extra": {"x": 1}},
            headers=bearer(tokens["access_token"]),
        )
        assert response.status_code == 200
        assert len(response.get_json()["data"]) == expected


def test_shim_trigger_requires_fields(make_shim, tokens):
    response = make_shim().post(TRIGGER, json={}, headers=bearer(tokens["access_token"]))
    assert response.status_code == 400
    assert "errors" in response.get_json()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-real-token"},
        {"Authorization": "Basic d2FsdGVyOnB3"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "x" * 600},
    ],
)
def test_shim_trigger_401_for_bad_tokens(make_shim, headers):
    assert_ifttt_401(make_shim().post(TRIGGER, json=FIELDS, headers=headers))


def test_shim_trigger_401_for_refresh_token(make_shim, tokens):
    assert_ifttt_401(
        make_shim().post(TRIGGER, json=FIELDS, headers=bearer(tokens["refresh_token"]))
    )


def test_shim_trigger_401_once_token_revoked_without_cache(make_shim, tokens):
    shim = make_shim(cache_seconds=0)
    first = shim.post(TRIGGER, json=FIELDS, headers=bearer(tokens["access_token"]))
    assert first.status_code == 200
    found = token_service.find_token(tokens["access_token"])
    token_service.revoke_family(found.family_id, reason="admin")
    assert_ifttt_401(shim.post(TRIGGER, json=FIELDS, headers=bearer(tokens["access_token"])))


def test_shim_answers_503_when_auth_server_stopped(
    make_shim, server_factory, tokens, user, oauth_client, caplog
):
    server = server_factory(workers=1)
    shim = make_shim(base_url=server.base_url, cache_seconds=60)
    cached = tokens["access_token"]
    assert shim.post(TRIGGER, json=FIELDS, headers=bearer(cached)).status_code == 200
    uncached = make_tokens(user, oauth_client)["access_token"]
    server.stop()
    caplog.set_level(logging.WARNING, logger="authserver.shim")
    response = shim.post(TRIGGER, json=FIELDS, headers=bearer(uncached))
    assert response.status_code == 503
    assert response.get_json() == {
        "errors": [{"message": "The service is temporarily unavailable. Please retry."}]
    }
    assert response.headers["Retry-After"] == "5"
    assert "WWW-Authenticate" not in response.headers
    assert any("introspection failed" in r.getMessage() for r in caplog.records)
    assert uncached not in caplog.text
    # A positive answer cached before the outage still serves.
    assert shim.post(TRIGGER, json=FIELDS, headers=bearer(cached)).status_code == 200


def test_shim_answers_503_not_401_when_its_credentials_are_wrong(make_shim, tokens, caplog):
    shim = make_shim(secret="not-the-secret")
    caplog.set_level(logging.ERROR, logger="authserver.shim")
    response = shim.post(TRIGGER, json=FIELDS, headers=bearer(tokens["access_token"]))
    assert response.status_code == 503
    assert "refused the resource server credentials" in caplog.text


def verifier_for(server, credentials, cache_seconds):
    return IntrospectionVerifier(
        server.base_url + "/oauth/introspect",
        server_id=credentials[0],
        secret=credentials[1],
        cache_seconds=cache_seconds,
    )


def connection_pool(verifier, server):
    """The verifier's urllib3 pool for the server (its counters are urllib3's own)."""
    manager = verifier.session.get_adapter(server.base_url).poolmanager
    keys = list(manager.pools.keys())
    if not keys:
        return None
    (key,) = keys
    return manager.pools[key]


def requests_sent(verifier, server):
    pool = connection_pool(verifier, server)
    return 0 if pool is None else pool.num_requests


def test_verifier_reuses_one_connection(server, credentials, tokens):
    verifier = verifier_for(server, credentials, cache_seconds=0)
    for _ in range(3):
        assert verifier.verify(tokens["access_token"])["active"] is True
    pool = connection_pool(verifier, server)
    assert pool.num_connections == 1
    assert pool.num_requests == 3


def test_verifier_cache_ends_after_cache_seconds(server, credentials, tokens):
    verifier = verifier_for(server, credentials, cache_seconds=30)
    before = time.time()
    assert verifier.verify(tokens["access_token"])["active"] is True
    after = time.time()
    assert requests_sent(verifier, server) == 1
    with freeze_time(datetime.fromtimestamp(before + 29, UTC)):
        assert verifier.verify(tokens["access_token"])["active"] is True
        assert requests_sent(verifier, server) == 1
    with freeze_time(datetime.fromtimestamp(after + 30, UTC)):
        assert verifier.verify(tokens["access_token"])["active"] is True
        assert requests_sent(verifier, server) == 2


def test_verifier_cache_never_outlives_token_exp(app, server, credentials, user, oauth_client):
    client_service.update_client(
        oauth_client.client_id,
        access_token_lifetime=20,
        refresh_grace_lifetime=0,
        default_access=app.config["ACCESS_TOKEN_TTL"],
        default_grace=app.config["REFRESH_GRACE_SECONDS"],
    )
    access = make_tokens(user, oauth_client)["access_token"]
    verifier = verifier_for(server, credentials, cache_seconds=3600)
    claims = verifier.verify(access)
    assert claims["exp"] - claims["iat"] == 20
    with freeze_time(datetime.fromtimestamp(claims["exp"] - 1, UTC)) as frozen:
        assert verifier.verify(access)["active"] is True
        assert requests_sent(verifier, server) == 1
        frozen.tick(1)
        # At exp the cached answer is gone and the token no longer counts as valid.
        assert verifier.verify(access) is None
        assert requests_sent(verifier, server) == 2


def test_verifier_does_not_cache_negative_answers(server, credentials, tokens):
    verifier = verifier_for(server, credentials, cache_seconds=60)
    assert verifier.verify("unknown-token") is None
    assert verifier.verify("unknown-token") is None
    assert requests_sent(verifier, server) == 2
    # A positive answer is cached, and clear_cache forgets it.
    assert verifier.verify(tokens["access_token"]) is not None
    assert verifier.verify(tokens["access_token"]) is not None
    assert requests_sent(verifier, server) == 3
    verifier.clear_cache()
    assert verifier.verify(tokens["access_token"]) is not None
    assert requests_sent(verifier, server) == 4


def test_verifier_refuses_bad_settings():
    with pytest.raises(ValueError, match="timeout"):
        IntrospectionVerifier(
            "http://127.0.0.1:9/oauth/introspect", server_id="rs_x", secret="s", timeout=0
        )


def test_shim_test_setup_answers_503_when_no_test_token(make_shim, example):
    def broken():
        raise example.TestTokenError("test token command failed: CalledProcessError")

    shim = make_shim(test_access_token=broken)
    response = shim.post("/ifttt/v1/test/setup", headers={"IFTTT-Service-Key": SERVICE_KEY})
    assert response.status_code == 503
    assert response.get_json()["errors"][0]["message"]
