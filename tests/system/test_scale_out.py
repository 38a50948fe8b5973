"""Two server instances on one PostgreSQL and one Redis behave as one server.

Always PostgreSQL: SQLite cannot be shared by servers on different machines, so scaling
out is a PostgreSQL property. The test uses the suite's database when the suite runs on
PostgreSQL (AUTHSERVER_TEST_DATABASE_URL); otherwise it starts a throwaway PostgreSQL
cluster (tests/system/pg_cluster.py), so it runs in both CI passes. Rate-limit counters
live in Redis at 127.0.0.1:6379 under a key prefix unique to this run, removed after.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import redis
import requests
from flask_migrate import upgrade

from authserver import create_app
from authserver.database import db
from tests.conftest import base_config
from tests.conftest import empty_database
from tests.factories import IFTTT_REDIRECT
from tests.factories import PASSWORD
from tests.factories import authorize_url
from tests.factories import make_oauth_client
from tests.factories import make_user
from tests.factories import query_of

from .conftest import start_server
from .pg_cluster import throwaway_cluster

REDIS_URL = "redis://127.0.0.1:6379/0"
STORM = 8


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import os

    url = os.environ.get("AUTHSERVER_TEST_DATABASE_URL", "")
    if url.startswith("postgresql"):
        # The session fixture migrated it already; the pg_app fixture empties it after.
        yield url
        return
    with throwaway_cluster() as cluster:
        app = create_app(base_config(cluster.url))
        with app.app_context():
            upgrade()
            db.engine.dispose()
        yield cluster.url


@pytest.fixture
def pg_app(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An in-process app on the shared PostgreSQL, to arrange rows; emptied after."""
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path / "instance"))
    application = create_app(base_config(pg_url))
    with application.app_context():
        yield application
        empty_database()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = "authserver-test-" + secrets.token_hex(6)
    yield prefix
    connection = redis.Redis.from_url(REDIS_URL)
    keys = list(connection.scan_iter(match=prefix + ":*"))
    if keys:
        connection.delete(*keys)
    connection.close()


@pytest.fixture
def pair(pg_app: Any, pg_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[list[Any]]:
    """Two instances (two workers each) sharing PostgreSQL, Redis and the secret key."""
    settings: dict[str, Any] = {
        "RATE_LIMITS": "on",
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": redis_prefix,
        "RATE_LIMIT_TOKEN_FAILURES": "5 per minute",
    }
    servers: list[Any] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            servers.append(start_server(pg_url, tmp_path, workers=2, **settings))
        except BaseException as error:
            errors.append(error)

    # Both start at once: each waits for its own /healthz.
    starters = [threading.Thread(target=start) for _ in range(2)]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join(timeout=90)
    try:
        assert not errors, errors
        assert len(servers) == 2
        yield servers
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.process.terminate()
        for server in servers:
            server.stop()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token in page"
    return match.group(1)


def token_post(server: Any, data: dict[str, str]) -> requests.Response:
    return requests.post(server.base_url + "/oauth/token", data=data, timeout=30)


def ifttt_connects(a: Any, b: Any, username: str, client_id: str) -> str:
    """Browser steps alternate between the two instances; return the code."""
    browser = requests.Session()
    # The cookie jar keys cookies by host, not port: one session for both instances.
    path = authorize_url(client_id)
    step = browser.get(a.base_url + path, allow_redirects=False, timeout=30)
    assert step.status_code == 302
    login_path = urljoin(a.base_url + path, step.headers["Location"])
    login_path = login_path[len(a.base_url) :]
    page = browser.get(b.base_url + login_path, timeout=30)
    assert page.status_code == 200
    step = browser.post(
        a.base_url + login_path,
        timeout=30,
        allow_redirects=False,
        data={
            "csrf_token": csrf_of(page.text),
            "username": username,
            "password": PASSWORD,
            "next": query_of(login_path)["next"],
        },
    )
    assert step.status_code == 302, step.text
    consent_path = urljoin(a.base_url + login_path, step.headers["Location"])[len(a.base_url) :]
    assert consent_path.startswith("/oauth/authorize?")
    page = browser.get(b.base_url + consent_path, timeout=30)
    assert page.status_code == 200
    assert "decision" in page.text
    step = browser.post(
        a.base_url + consent_path,
        timeout=30,
        allow_redirects=False,
        data={"csrf_token": csrf_of(page.text), "decision": "allow"},
    )
    assert step.status_code == 302
    assert step.headers["Location"].startswith(IFTTT_REDIRECT)
    return query_of(step.headers["Location"])["code"]


def test_two_instances_share_codes_tokens_grace_reuse_and_rate_limits(pg_app, pair):
    a, b = pair
    user = make_user()
    oauth_client, secret = make_oauth_client()
    assert secret is not None
    client_id = oauth_client.client_id
    auth = {"client_id": client_id, "client_secret": secret}

    # Authorize, log in and consent across both instances; exchange on the second.
    code = ifttt_connects(a, b, user.username, client_id)
    exchanged = token_post(
        b,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": IFTTT_REDIRECT, **auth},
    )
    assert exchanged.status_code == 200, exchanged.text
    first = exchanged.json()
    info = requests.get(
        a.base_url + "/ifttt/v1/user/info",
        timeout=30,
        headers={"Authorization": f"Bearer {first['access_token']}"},
    )
    assert info.json()["data"]["id"] == user.public_id

    # Refresh storm split across both instances: one rotation, every caller gets it.
    results: list[tuple[int, dict[str, Any]]] = []
    barrier = threading.Barrier(STORM)

    def storm(index: int) -> None:
        target = (a, b)[index % 2]
        barrier.wait(timeout=30)
        response = token_post(
            target, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], **auth}
        )
        results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=storm, args=(i,)) for i in range(STORM)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [status for status, _ in results] == [200] * STORM, results
    successors = {(body["access_token"], body["refresh_token"]) for _, body in results}
    assert len(successors) == 1
    successor = results[0][1]
    assert successor["refresh_token"] != first["refresh_token"]

    # Grace replay on A, then the successor is used on B; replaying the old token on A
    # is now reuse, and the family revoked on A is revoked for B as well.
    replay = token_post(
        a, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], **auth}
    )
    assert replay.json()["refresh_token"] == successor["refresh_token"]
    third = token_post(
        b, {"grant_type": "refresh_token", "refresh_token": successor["refresh_token"], **auth}
    )
    assert third.status_code == 200
    reused = token_post(
        a, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], **auth}
    )
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    dead = token_post(
        b, {"grant_type": "refresh_token", "refresh_token": third.json()["refresh_token"], **auth}
    )
    assert (dead.status_code, dead.json()["error"]) == (400, "invalid_grant")
    info = requests.get(
        b.base_url + "/ifttt/v1/user/info",
        timeout=30,
        headers={"Authorization": f"Bearer {third.json()['access_token']}"},
    )
    assert info.status_code == 401

    # Token failures are counted in Redis: five spread over both instances use up the
    # shared "5 per minute"; in process memory no single worker would be near it.
    prober = {"client_id": "probe-" + secrets.token_hex(4), "client_secret": "wrong"}
    failing = {"grant_type": "refresh_token", "refresh_token": "nope", **prober}
    statuses = [token_post((a, b)[i % 2], failing).status_code for i in range(5)]
    assert statuses == [401] * 5
    assert token_post(a, failing).status_code == 429
    limited = token_post(b, failing)
    assert limited.status_code == 429
    assert limited.json()["error"] == "slow_down"
    assert int(limited.headers["Retry-After"]) >= 1
