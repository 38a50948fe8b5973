"""The example shim on the kit, as a real process against a real `authserver serve`.

`authserver shim-check` must pass against it; the verifier underneath is checked
against the real server too.
"""

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pytest
import requests
from freezegun import freeze_time

from authserver.services import clients as client_service
from authserver.services import shim_test_tokens as test_token_service
from authserver.services import tokens as token_service
from authserver.shim import IftttService
from authserver.shim import IntrospectionVerifier
from tests.factories import make_tokens
from tests.shim.conftest import ThreadedServer
from tests.shim.conftest import shim_client
from tests.shim.test_realtime import FakeRealtime
from tests.system.conftest import AUTHSERVER
from tests.system.conftest import free_port
from tests.system.conftest import server_env
from tests.system.conftest import start_server

pytestmark = pytest.mark.slow

SERVICE_KEY = "service-key-" + "k" * 40
STAGING_KEY = "staging-key-" + "s" * 40
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shim" / "app.py"
TRIGGER = "/ifttt/v1/triggers/new_thing"
FIELDS = {"triggerFields": {"topic": "news"}}


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory):
    """One server for the module's tests that leave it running (startup is slow)."""
    process = start_server(database_url, tmp_path_factory.mktemp("shim-server"), workers=2)
    yield process
    process.stop()


@pytest.fixture
def credentials(app, user, oauth_client):
    resource_server, secret = client_service.register_resource_server("Example shim")
    test_token_service.allow_test_tokens(
        resource_server.server_id, username=user.username, client_id=oauth_client.client_id
    )
    return resource_server.server_id, secret


@pytest.fixture
def tokens(user, oauth_client):
    return make_tokens(user, oauth_client)


@pytest.fixture
def realtime():
    fake = FakeRealtime()
    served = ThreadedServer(fake.app)
    fake.base_url = served.base_url
    yield fake
    served.stop()


@pytest.fixture
def example(server, credentials, realtime, tmp_path):
    """`python examples/shim/app.py` as IFTTT would reach it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(
        {
            "AUTHSERVER_URL": server.base_url,
            "SHIM_SERVER_ID": credentials[0],
            "SHIM_SERVER_SECRET": credentials[1],
            "IFTTT_SERVICE_KEY": f"{SERVICE_KEY},{STAGING_KEY}",
            "IFTTT_REALTIME_URL": realtime.base_url,
            "SHIM_DATABASE_URL": "sqlite:///" + str(tmp_path / "example.db"),
            "PORT": str(port),
        }
    )
    log_path = tmp_path / "example.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLE)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log_path.read_text()
        try:
            status = requests.get(
                url + "/ifttt/v1/status", headers={"IFTTT-Service-Key": SERVICE_KEY}, timeout=1
            )
            if status.status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    yield url
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def shim_check(database_url, tmp_path, url, key):
    env = server_env(database_url, tmp_path / "check-instance", free_port())
    return subprocess.run(
        [AUTHSERVER, "shim-check", "--shim-url", url, "--service-key-stdin", "--timeout", "10"],
        input=key + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_example_shim_passes_shim_check(
    example, database_url, tmp_path, realtime, user, oauth_client
):
    for key in (SERVICE_KEY, STAGING_KEY):
        done = shim_check(database_url, tmp_path, example, key)
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.strip().splitlines()
        assert all(line.startswith("PASS  ") for line in lines[:-1]), done.stdout
        assert lines[-1] == f"All {len(lines) - 1} checks passed."
        assert len(lines) - 1 == 17  # every check family, for each sampled endpoint
    # The action's note woke the trigger identity shim-check polled with: a notification.
    deadline = time.monotonic() + 10
    while not realtime.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert realtime.calls, "no Realtime notification after the action"
    call = realtime.calls[0]
    assert call["headers"]["Ifttt-Service-Key"] == SERVICE_KEY
    assert "trigger_identity" in call["body"]["data"][0]
    # Two test runs, one test grant.
    assert len(token_service.list_families(user=user, oauth_client=oauth_client)) == 1


def test_shim_check_fails_with_a_wrong_key(example, database_url, tmp_path):
    done = shim_check(database_url, tmp_path, example, "not-the-key")
    assert done.returncode == 1
    assert "FAIL  status: expected 200, got 401" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


@pytest.fixture
def make_shim(server, credentials):
    def _make(base_url=None, secret=None, cache_seconds=0):
        service = IftttService(
            authserver_url=base_url or server.base_url,
            server_id=credentials[0],
            server_secret=secret or credentials[1],
            service_keys=[SERVICE_KEY],
            cache_seconds=cache_seconds,
            timeout=5.0,
        )
        service.trigger("new_thing", fields=["topic"])(
            lambda user, fields, limit: [
                {"meta": {"id": f"{user.sub}-{n}", "timestamp": 1_900_000_000 + n}}
                for n in range(5)
            ]
        )
        return shim_client(service)

    return _make


def bearer(token):
    return {"Authorization": f"Bearer {token}", "X-Request-ID": "shim-test"}


def assert_ifttt_401(response):
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.get_json()["errors"][0]["message"]


def test_shim_trigger_401_once_token_revoked_without_cache(make_shim, tokens):
    shim = make_shim(cache_seconds=0)
    first = shim.post(TRIGGER, json=FIELDS, headers=bearer(tokens["access_token"]))
    assert first.status_code == 200
    found = token_service.find_token(tokens["access_token"])
    assert found is not None
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
