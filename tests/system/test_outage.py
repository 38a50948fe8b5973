"""Database outages against a real server and a real PostgreSQL that the test stops.

The cluster is a throwaway one (``tests/system/pg_cluster.py``), independent of
AUTHSERVER_TEST_DATABASE_URL: stopping the shared test database would break every
other test running against it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask_migrate import upgrade

from authserver import create_app
from authserver.database import db
from authserver.services import clients as client_service
from authserver.services import codes as code_service
from tests.conftest import base_config
from tests.factories import IFTTT_REDIRECT
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user
from tests.system.conftest import ServerProcess
from tests.system.conftest import start_server
from tests.system.pg_cluster import PgCluster
from tests.system.pg_cluster import find_bindir
from tests.system.pg_cluster import throwaway_cluster

pytestmark = pytest.mark.skipif(
    find_bindir() is None, reason="no PostgreSQL server binaries under /usr/lib/postgresql"
)

DB_TIMEOUT = 2
# An answer may take the connect timeout plus request overhead on a busy 2-core box;
# anything longer is a hang.
MAX_ANSWER_SECONDS = DB_TIMEOUT + 3
RECOVERY_SECONDS = 30


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    with throwaway_cluster() as pg:
        yield pg


@pytest.fixture
def cluster_app(
    cluster: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Flask]:
    """An in-process app on the throwaway cluster, migrated to head."""
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path / "instance"))
    application = create_app(base_config(cluster.url))
    with application.app_context():
        upgrade()
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def cluster_server(
    cluster: PgCluster, cluster_app: Flask, tmp_path: Path
) -> Iterator[ServerProcess]:
    server = start_server(cluster.url, tmp_path, workers=2, DB_TIMEOUT_SECONDS=DB_TIMEOUT)
    yield server
    server.stop(signal.SIGTERM)


def arrange(cluster_app: Flask) -> dict[str, Any]:
    """Create a user, an IFTTT client, a resource server, tokens and an unused code."""
    user = make_user(username="walter", name="Walter White")
    oauth_client, secret = make_oauth_client(name="IFTTT", client_id="ifttt")
    assert secret is not None
    resource_server, rs_secret = client_service.register_resource_server("Trigger shim")
    tokens = make_tokens(user, oauth_client)
    code = "outage-code-" + "x" * 30
    code_service.create_authorization_code(
        code=code,
        oauth_client=oauth_client,
        user=user,
        redirect_uri=IFTTT_REDIRECT,
        scope="ifttt",
        code_challenge=None,
        code_challenge_method=None,
    )
    state = {
        "client": ("ifttt", secret),
        "resource_server": (resource_server.server_id, rs_secret),
        "access_token": tokens["access_token"],
        "refresh_token": tokens["refresh_token"],
        "code": code,
    }
    # Hand the connection back now: it dies with the cluster, and a later rollback on
    # it would fail in teardown.
    db.session.remove()
    db.engine.dispose()
    return state


def calls(
    base_url: str, state: dict[str, Any], timeout: float = 30
) -> dict[str, Callable[[], requests.Response]]:
    """Each endpoint that needs the database, as IFTTT and the shims call it."""
    client_id, secret = state["client"]

    def refresh() -> requests.Response:
        return requests.post(
            base_url + "/oauth/token",
            timeout=timeout,
            data={
                "grant_type": "refresh_token",
                "refresh_token": state["refresh_token"],
                "client_id": client_id,
                "client_secret": secret,
            },
        )

    def exchange() -> requests.Response:
        return requests.post(
            base_url + "/oauth/token",
            timeout=timeout,
            data={
                "grant_type": "authorization_code",
                "code": state["code"],
                "client_id": client_id,
                "client_secret": secret,
                "redirect_uri": IFTTT_REDIRECT,
            },
        )

    def introspect() -> requests.Response:
        return requests.post(
            base_url + "/oauth/introspect",
            timeout=timeout,
            data={"token": state["access_token"]},
            auth=state["resource_server"],
        )

    def user_info() -> requests.Response:
        return requests.get(
            base_url + "/ifttt/v1/user/info",
            timeout=timeout,
            headers={"Authorization": "Bearer " + state["access_token"]},
        )

    return {
        "refresh": refresh,
        "exchange": exchange,
        "introspect": introspect,
        "user_info": user_info,
    }


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_unavailable(
    name: str,
    response: requests.Response,
    elapsed: float,
    server: ServerProcess,
    within: float = MAX_ANSWER_SECONDS,
) -> None:
    context = f"{name}: {response.status_code} {response.text[:300]} after {elapsed:.2f}s"
    assert response.status_code == 503, context + "\n" + server.log()[-5000:]
    assert elapsed < within, context
    assert response.headers["Content-Type"].startswith("application/json"), context
    assert response.headers["Retry-After"], context
    assert response.headers["Cache-Control"] == "no-store", context
    body = response.json()
    if name == "user_info":
        # IFTTT's shape; a 401 here would count toward disabling the user's Applets.
        assert set(body) == {"errors"}, context
        assert body["errors"][0]["message"], context
    else:
        assert body["error"] == "temporarily_unavailable", context


def wait_until_ready(server: ServerProcess) -> float:
    """Poll /readyz until 200; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < RECOVERY_SECONDS:
        try:
            if requests.get(server.base_url + "/readyz", timeout=10).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(
        f"not ready {RECOVERY_SECONDS}s after the database came back\n" + server.log()[-5000:]
    )


def test_database_outage_answers_503_then_recovers_without_restart(
    cluster, cluster_app, cluster_server
):
    state = arrange(cluster_app)
    server = cluster_server
    endpoints = calls(server.base_url, state)
    # Up: every endpoint works (the code is kept for later, so it is not exchanged yet).
    for name in ("introspect", "user_info"):
        assert endpoints[name]().status_code == 200, name
    assert requests.get(server.base_url + "/readyz", timeout=10).status_code == 200

    cluster.stop("immediate")

    # Three rounds, so both workers meet the outage with their pooled connections dead.
    slowest = 0.0
    for _ in range(3):
        for name, call in endpoints.items():
            response, elapsed = timed(call)
            assert_unavailable(name, response, elapsed, server)
            slowest = max(slowest, elapsed)
    ready, elapsed = timed(lambda: requests.get(server.base_url + "/readyz", timeout=30))
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert "unreachable" in ready.json()["reason"]
    assert elapsed < MAX_ANSWER_SECONDS
    assert requests.get(server.base_url + "/healthz", timeout=10).status_code == 200
    assert "database unavailable" in server.log()

    cluster.start()
    recovery = wait_until_ready(server)

    # Same server process, no restart: pre-ping replaced the dead pooled connections.
    assert server.process.poll() is None
    for _ in range(4):
        assert endpoints["user_info"]().status_code == 200
        introspection = endpoints["introspect"]()
        assert introspection.status_code == 200
        assert introspection.json()["active"] is True
    # The refresh that failed during the outage changed nothing: the token still rotates.
    refreshed = endpoints["refresh"]()
    assert refreshed.status_code == 200, refreshed.text
    state["refresh_token"] = refreshed.json()["refresh_token"]
    exchanged = endpoints["exchange"]()
    assert exchanged.status_code == 200, exchanged.text
    state["access_token"] = exchanged.json()["access_token"]
    assert endpoints["user_info"]().json()["data"]["name"] == "Walter White"
    assert endpoints["refresh"]().status_code == 200
    print(f"outage: slowest 503 {slowest:.2f}s, ready {recovery:.2f}s after restart")
    assert "Traceback" not in server.log()


# A frozen database answers nothing, so only our own deadline ends the wait; the
# issue's promise is the database timeout plus one second.
FROZEN_ANSWER_SECONDS = DB_TIMEOUT + 1


def timed_against_frozen(
    name: str, call: Callable[[], requests.Response], server: ServerProcess
) -> float:
    """Call an endpoint of a server whose database is frozen; expect a 503 in time."""
    started = time.monotonic()
    try:
        response = call()
    except requests.Timeout:
        raise AssertionError(
            f"{name}: no answer after {time.monotonic() - started:.1f}s\n" + server.log()[-3000:]
        ) from None
    elapsed = time.monotonic() - started
    assert_unavailable(name, response, elapsed, server, within=FROZEN_ANSWER_SECONDS)
    return elapsed


@pytest.fixture
def one_worker_server(
    cluster: PgCluster, cluster_app: Flask, tmp_path: Path
) -> Iterator[ServerProcess]:
    # One worker: which pooled connection meets the freeze is then known.
    server = start_server(cluster.url, tmp_path, workers=1, DB_TIMEOUT_SECONDS=DB_TIMEOUT)
    yield server
    cluster.thaw()
    server.stop(signal.SIGTERM)


def test_frozen_database_answers_503_within_the_timeout_then_recovers(
    cluster, cluster_app, one_worker_server
):
    """SIGSTOPped PostgreSQL: TCP stays up, nothing answers; 503 in time, every path."""
    state = arrange(cluster_app)
    server = one_worker_server
    endpoints = calls(server.base_url, state, timeout=FROZEN_ANSWER_SECONDS + 10)
    times = []

    # A pooled connection used a moment ago (no ping): the query itself hangs.
    assert endpoints["introspect"]().status_code == 200
    cluster.freeze()
    times.append(timed_against_frozen("introspect", endpoints["introspect"], server))
    # The pool now connects anew: the connection attempt hangs.
    for name in ("user_info", "refresh", "exchange"):
        times.append(timed_against_frozen(name, endpoints[name], server))
    ready = requests.get(server.base_url + "/readyz", timeout=FROZEN_ANSWER_SECONDS + 10)
    assert ready.status_code == 503
    cluster.thaw()
    wait_until_ready(server)

    # A pooled connection idle past DB_PING_AFTER_IDLE_SECONDS: the ping hangs, and
    # the request must not then spend another timeout on reconnecting.
    assert endpoints["user_info"]().status_code == 200
    time.sleep(1.5)
    cluster.freeze()
    times.append(timed_against_frozen("user_info", endpoints["user_info"], server))
    cluster.thaw()
    wait_until_ready(server)

    # Nothing half-done: the refresh token still rotates, the code is still unused.
    assert server.process.poll() is None
    assert endpoints["introspect"]().json()["active"] is True
    refreshed = endpoints["refresh"]()
    assert refreshed.status_code == 200, refreshed.text
    exchanged = endpoints["exchange"]()
    assert exchanged.status_code == 200, exchanged.text
    print(f"frozen database: 503 after {', '.join(f'{t:.2f}s' for t in times)}")
    assert "Traceback" not in server.log()
