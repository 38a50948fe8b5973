"""Races against a real multi-worker server: code redemption and refresh storms.

Each storm starts N threads on a barrier so their requests reach gunicorn's workers
together; the assertions then look at every answer and at the rows left behind.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import func
from sqlalchemy import select

from authserver.clock import utcnow
from authserver.database import db
from authserver.models import AccessToken
from authserver.models import AuthorizationCode
from authserver.models import RefreshToken
from authserver.models import TokenFamily
from authserver.security import hash_token
from tests.factories import IFTTT_REDIRECT
from tests.system.conftest import ServerProcess
from tests.system.conftest import start_server

pytestmark = pytest.mark.slow

CODE_STORM = 12
REFRESH_STORM = 24
# Small enough that the test waits only seconds for it to end, large enough that a
# storm of REFRESH_STORM requests on a busy 2-core machine finishes inside it.
GRACE_SECONDS = 5
CAP_STORM = 16
MAX_REPLAYS = 10  # an explicit cap, for the cap test's own server
DEFAULT_STORM = 32  # issue 13: 32 parallel retries at default settings
SEQUENTIAL_REPLAYS = 40
REQUEST_TIMEOUT = 30


@pytest.fixture(scope="module")
def shared_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One 4-worker server at default settings, shared by this module's tests."""
    server = start_server(database_url, tmp_path_factory.mktemp("server"), workers=4)
    yield server
    server.stop()


def storm(n: int, send: Callable[[requests.Session], requests.Response]) -> list[Any]:
    """Run ``send`` in n threads released together; return (status, body) per thread."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(index: int) -> None:
        with requests.Session() as session:
            try:
                barrier.wait(timeout=30)
                response = send(session)
                try:
                    body: Any = response.json()
                except ValueError:
                    body = response.text
                results[index] = (response.status_code, body)
            except Exception as error:  # reported in the assertion, never swallowed
                results[index] = ("exception", repr(error))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT + 30)
    assert not any(thread.is_alive() for thread in threads), "storm threads hung"
    return results


def report(server: Any, results: list[Any]) -> str:
    """Summarise a storm and the server log for an assertion message."""
    counts = Counter(str(status) for status, _ in results)
    log = server.log()
    return f"statuses={dict(counts)}\nresults={results!r}\n--- server log ---\n{log[-20000:]}"


def assert_clean_log(server: Any) -> None:
    log = server.log()
    markers = ("Traceback", "server_error", "database unavailable", "unhandled error")
    for marker in markers:
        assert marker not in log, f"{marker!r} in server log:\n{log[-20000:]}"


def token_post(base_url: str, data: dict[str, str]) -> Callable[..., Any]:
    def send(session: requests.Session) -> requests.Response:
        return session.post(base_url + "/oauth/token", data=data, timeout=REQUEST_TIMEOUT)

    return send


def test_concurrent_code_redemption_has_exactly_one_winner(
    shared_server, user, oauth_client, client_secret, get_code
):
    server = shared_server
    code = get_code(user, oauth_client)
    send = token_post(
        server.base_url,
        {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
            "redirect_uri": IFTTT_REDIRECT,
        },
    )

    started = time.monotonic()
    results = storm(CODE_STORM, send)
    elapsed = time.monotonic() - started
    print(f"code storm: {CODE_STORM} requests in {elapsed:.3f}s")

    message = report(server, results)
    statuses = Counter(status for status, _ in results)
    assert statuses[200] == 1, message
    assert statuses[400] == CODE_STORM - 1, message
    losers = [body for status, body in results if status == 400]
    assert all(body["error"] == "invalid_grant" for body in losers), message
    assert elapsed < REQUEST_TIMEOUT, message
    assert_clean_log(server)
    winner = next(body for status, body in results if status == 200)
    assert winner["token_type"] == "Bearer", message
    assert winner["refresh_token"], message

    db.session.rollback()  # see the server's commits, not this session's snapshot
    row = db.session.scalar(
        select(AuthorizationCode).where(AuthorizationCode.code_hash == hash_token(code))
    )
    assert row is not None
    assert row.used_at is not None
    # One family, holding exactly the winner's pair: the losers issued nothing.
    families = db.session.scalars(
        select(TokenFamily).where(TokenFamily.oauth_client_id == oauth_client.id)
    ).all()
    assert [family.id for family in families] == [row.family_id], message
    access_hashes = db.session.scalars(
        select(AccessToken.token_hash).where(AccessToken.family_id == row.family_id)
    ).all()
    assert access_hashes == [hash_token(winner["access_token"])]
    refresh_hashes = db.session.scalars(
        select(RefreshToken.token_hash).where(RefreshToken.family_id == row.family_id)
    ).all()
    assert refresh_hashes == [hash_token(winner["refresh_token"])]
    # RFC 6749 §4.1.2: a code used more than once revokes what it issued. Every loser's
    # claim waits for the winner's commit (row lock / SQLite write lock), so each one
    # sees the winner's family and revokes it: concurrent duplicates count as replay.
    assert families[0].revoked_at is not None
    assert families[0].revoke_reason == "code_replay"
    revoked = requests.get(
        server.base_url + "/ifttt/v1/user/info",
        headers={"Authorization": f"Bearer {winner['access_token']}"},
        timeout=10,
    )
    assert revoked.status_code == 401, revoked.text


def first_refresh_token(user, oauth_client, client_secret, get_code, exchange) -> str:
    code = get_code(user, oauth_client)
    response = exchange(code, oauth_client.client_id, client_secret)
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["refresh_token"])


def test_refresh_storm_converges_on_one_successor_then_reuse_revokes_family(
    server_factory, user, oauth_client, client_secret, get_code, exchange
):
    # The replay cap is raised above the storm size: this test is about convergence;
    # with the default cap (10) the eleventh duplicate is treated as reuse (see the
    # cap test below).
    server = server_factory(
        workers=4,
        REFRESH_GRACE_SECONDS=GRACE_SECONDS,
        REFRESH_MAX_REPLAYS=REFRESH_STORM * 2,
    )
    r0 = first_refresh_token(user, oauth_client, client_secret, get_code, exchange)
    send = token_post(
        server.base_url,
        {
            "grant_type": "refresh_token",
            "refresh_token": r0,
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
        },
    )

    started = time.monotonic()
    results = storm(REFRESH_STORM, send)
    elapsed = time.monotonic() - started
    print(f"refresh storm: {REFRESH_STORM} requests in {elapsed:.3f}s")

    message = report(server, results)
    assert [status for status, _ in results] == [200] * REFRESH_STORM, message
    assert elapsed < GRACE_SECONDS, f"storm took {elapsed:.2f}s, longer than the window"
    pairs = {(body["access_token"], body["refresh_token"]) for _, body in results}
    assert len(pairs) == 1, message
    ((a1, r1),) = pairs
    assert r1 != r0
    assert_clean_log(server)

    db.session.rollback()
    parent = db.session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(r0))
    )
    assert parent is not None
    assert parent.rotated_at is not None
    assert parent.replay_count == REFRESH_STORM - 1
    successors = db.session.scalars(
        select(RefreshToken).where(RefreshToken.parent_id == parent.id)
    ).all()
    assert [s.token_hash for s in successors] == [hash_token(r1)]
    family_refresh = db.session.scalar(
        select(func.count())
        .select_from(RefreshToken)
        .where(RefreshToken.family_id == parent.family_id)
    )
    family_access = db.session.scalar(
        select(func.count())
        .select_from(AccessToken)
        .where(AccessToken.family_id == parent.family_id)
    )
    assert (family_refresh, family_access) == (2, 2)  # R0 + R1, A0 + A1: no fork
    user_info = requests.get(
        server.base_url + "/ifttt/v1/user/info",
        headers={"Authorization": f"Bearer {a1}"},
        timeout=10,
    )
    assert user_info.status_code == 200, user_info.text

    # A real server cannot be frozen: wait (bounded) until the window has passed.
    assert parent.grace_ends_at is not None
    margin = timedelta(milliseconds=200)
    wait = (parent.grace_ends_at - utcnow() + margin).total_seconds()
    assert wait <= GRACE_SECONDS + 1
    time.sleep(max(0.0, wait))

    started = time.monotonic()
    late = storm(REFRESH_STORM, send)
    print(f"late storm: {REFRESH_STORM} requests in {time.monotonic() - started:.3f}s")
    message = report(server, late)
    assert all(status == 400 and body["error"] == "invalid_grant" for status, body in late), message
    assert_clean_log(server)
    db.session.rollback()
    family = db.session.get(TokenFamily, parent.family_id)
    assert family is not None
    assert family.revoked_at is not None
    assert family.revoke_reason == "reuse_detected"
    # Nothing new was issued by the late storm, and the whole family is dead.
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.family_id == parent.family_id)
        )
        == 2
    )
    dead_successor = requests.post(
        server.base_url + "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": r1,
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
        },
        timeout=10,
    )
    assert dead_successor.status_code == 400, dead_successor.text
    assert dead_successor.json()["error"] == "invalid_grant"
    dead_access = requests.get(
        server.base_url + "/ifttt/v1/user/info",
        headers={"Authorization": f"Bearer {a1}"},
        timeout=10,
    )
    assert dead_access.status_code == 401, dead_access.text


def refresh_post(base_url: str, refresh_token: str, oauth_client, secret) -> Any:
    return token_post(
        base_url,
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": oauth_client.client_id,
            "client_secret": secret,
        },
    )


def test_retry_storm_at_default_settings_never_disconnects_the_user(
    shared_server, user, oauth_client, client_secret, get_code, exchange
):
    """Issue 13: 32 parallel retries, then 40 sequential ones, and the grant lives on."""
    server = shared_server
    r0 = first_refresh_token(user, oauth_client, client_secret, get_code, exchange)
    send = refresh_post(server.base_url, r0, oauth_client, client_secret)

    results = storm(DEFAULT_STORM, send)

    message = report(server, results)
    statuses = Counter(status for status, _ in results)
    print(f"default storm of {DEFAULT_STORM}: {dict(statuses)}")
    assert statuses == {200: DEFAULT_STORM}, message
    pairs = {(body["access_token"], body["refresh_token"]) for _, body in results}
    assert len(pairs) == 1, message
    ((a1, r1),) = pairs
    with requests.Session() as session:
        sequential = [send(session) for _ in range(SEQUENTIAL_REPLAYS)]
    print(f"then {SEQUENTIAL_REPLAYS} sequential: {Counter(r.status_code for r in sequential)}")
    assert [r.status_code for r in sequential] == [200] * SEQUENTIAL_REPLAYS
    assert {r.json()["refresh_token"] for r in sequential} == {r1}
    assert_clean_log(server)
    db.session.rollback()
    parent = db.session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(r0))
    )
    assert parent is not None
    assert parent.replay_count == DEFAULT_STORM - 1 + SEQUENTIAL_REPLAYS
    family = db.session.get(TokenFamily, parent.family_id)
    assert family is not None
    assert family.revoked_at is None
    user_info = requests.get(
        server.base_url + "/ifttt/v1/user/info",
        headers={"Authorization": f"Bearer {a1}"},
        timeout=10,
    )
    assert user_info.status_code == 200, user_info.text
    with requests.Session() as session:
        successor = refresh_post(server.base_url, r1, oauth_client, client_secret)(session)
    assert successor.status_code == 200, successor.text


def test_refresh_storm_beyond_replay_cap_refuses_the_excess_without_revoking(
    server_factory, user, oauth_client, client_secret, get_code, exchange
):
    """Concurrent duplicates cannot overrun REFRESH_MAX_REPLAYS; the excess is refused
    but the grant is not revoked (a retry storm is not an attack)."""
    server = server_factory(workers=4, REFRESH_MAX_REPLAYS=MAX_REPLAYS)
    r0 = first_refresh_token(user, oauth_client, client_secret, get_code, exchange)
    send = refresh_post(server.base_url, r0, oauth_client, client_secret)

    results = storm(CAP_STORM, send)

    message = report(server, results)
    statuses = Counter(status for status, _ in results)
    # The rotation itself plus exactly MAX_REPLAYS replays succeed.
    assert statuses == {
        200: 1 + MAX_REPLAYS,
        400: CAP_STORM - 1 - MAX_REPLAYS,
    }, message
    pairs = {
        (body["access_token"], body["refresh_token"]) for status, body in results if status == 200
    }
    assert len(pairs) == 1, message
    assert all(body["error"] == "invalid_grant" for status, body in results if status == 400), (
        message
    )
    assert_clean_log(server)
    db.session.rollback()
    parent = db.session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(r0))
    )
    assert parent is not None
    assert parent.replay_count == MAX_REPLAYS
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.parent_id == parent.id)
        )
        == 1
    )
    family = db.session.get(TokenFamily, parent.family_id)
    assert family is not None
    assert family.revoked_at is None, message
    ((_, r1),) = pairs
    with requests.Session() as session:
        successor = refresh_post(server.base_url, r1, oauth_client, client_secret)(session)
    assert successor.status_code == 200, successor.text


def test_refresh_racing_second_successor_is_invalid_grant_not_5xx(
    http, user, oauth_client, client_secret, get_code, exchange, refresh
):
    """The UNIQUE parent link is the backstop behind the claim: its error is no 5xx.

    The claim makes this state unreachable by racing, so it is arranged directly: a
    successor row already exists while the parent still looks unrotated.
    """
    r0 = first_refresh_token(user, oauth_client, client_secret, get_code, exchange)
    parent = db.session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(r0))
    )
    assert parent is not None
    db.session.add(
        RefreshToken(
            token_hash=hash_token("racing-successor"),
            family_id=parent.family_id,
            parent_id=parent.id,
            issued_at=utcnow(),
        )
    )
    db.session.commit()

    response = refresh(r0, oauth_client.client_id, client_secret)

    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == "invalid_grant"
    db.session.rollback()
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.parent_id == parent.id)
        )
        == 1
    )


def test_google_parallel_replays_converge_on_one_successor_with_fresh_access_tokens(
    shared_server, user, get_code, exchange
):
    """Issue 15: google replays never fork the family; each gets its own access token."""
    from authserver.services import clients as client_service
    from tests.factories import make_oauth_client

    server = shared_server
    google, secret = make_oauth_client(policy=client_service.PolicyChange(profile="google"))
    r0 = first_refresh_token(user, google, secret, get_code, exchange)
    send = refresh_post(server.base_url, r0, google, secret)

    results = storm(CAP_STORM, send)

    message = report(server, results)
    assert [status for status, _ in results] == [200] * CAP_STORM, message
    assert len({body["refresh_token"] for _, body in results}) == 1, message
    access_tokens = {body["access_token"] for _, body in results}
    assert len(access_tokens) == CAP_STORM, message
    assert_clean_log(server)
    db.session.rollback()
    parent = db.session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(r0))
    )
    assert parent is not None
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.family_id == parent.family_id)
        )
        == 2
    )
    with requests.Session() as session:
        for token in access_tokens:
            answer = session.get(
                server.base_url + "/ifttt/v1/user/info",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
