"""SIGKILL a server under load: every token a client received must survive.

A token is committed before its response is sent, and a rotation commits the claim
and the successor together, so a crash can lose responses but never state. Runs on
the session's test database (SQLite or PostgreSQL).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import aliased

from authserver.database import db
from authserver.models import AccessToken
from authserver.models import AuthorizationCode
from authserver.models import RefreshToken
from authserver.models import TokenFamily
from authserver.security import hash_token
from authserver.services import tokens as token_service
from tests.factories import IFTTT_REDIRECT
from tests.factories import make_tokens

CHAINS = 3
EXCHANGERS = 2
CODES = 40
# Kill once this many token responses were received, so the kill lands mid-stream.
KILL_AFTER = 12
MAX_REQUESTS_PER_THREAD = 200
REQUEST_TIMEOUT = 15


@dataclass
class Received:
    """What the clients got back, per chain (the newest pair last)."""

    chains: list[list[dict[str, Any]]]
    codes: list[str]
    interrupted: int = 0
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return sum(len(chain) for chain in self.chains)


def refresh_loop(
    base_url: str,
    credentials: tuple[str, str],
    chain: list[dict[str, Any]],
    received: Received,
    stop: threading.Event,
) -> None:
    client_id, secret = credentials
    with requests.Session() as session:
        for _ in range(MAX_REQUESTS_PER_THREAD):
            if stop.is_set():
                return
            try:
                response = session.post(
                    base_url + "/oauth/token",
                    timeout=REQUEST_TIMEOUT,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": chain[-1]["refresh_token"],
                        "client_id": client_id,
                        "client_secret": secret,
                    },
                )
            except requests.RequestException:
                with received.lock:
                    received.interrupted += 1
                return
            with received.lock:
                if response.status_code == 200:
                    chain.append(response.json())
                else:
                    received.unexpected.append(f"refresh {response.status_code} {response.text}")
                    return


def exchange_loop(
    base_url: str, credentials: tuple[str, str], received: Received, stop: threading.Event
) -> None:
    client_id, secret = credentials
    with requests.Session() as session:
        for _ in range(MAX_REQUESTS_PER_THREAD):
            with received.lock:
                if stop.is_set() or not received.codes:
                    return
                code = received.codes.pop()
            try:
                response = session.post(
                    base_url + "/oauth/token",
                    timeout=REQUEST_TIMEOUT,
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "client_id": client_id,
                        "client_secret": secret,
                        "redirect_uri": IFTTT_REDIRECT,
                    },
                )
            except requests.RequestException:
                with received.lock:
                    received.interrupted += 1
                return
            with received.lock:
                if response.status_code == 200:
                    received.chains.append([response.json()])
                else:
                    received.unexpected.append(f"exchange {response.status_code} {response.text}")
                    return


def metrics_dir_of(pid: int) -> str | None:
    """Read the per-run metrics folder from the master's environment (SIGKILL leaks it)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
            return entry.split(b"=", 1)[1].decode()
    return None


def kill_group(server: Any) -> None:
    """SIGKILL gunicorn's master and every worker at once (one process group)."""
    leaked = metrics_dir_of(server.process.pid)
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    if leaked and os.path.basename(leaked).startswith("authserver-metrics-"):
        shutil.rmtree(leaked, ignore_errors=True)


def test_sigkill_under_load_loses_no_received_token(
    app, user, oauth_client, client_secret, server_factory
):
    credentials = (oauth_client.client_id, client_secret)
    chains = [[make_tokens(user, oauth_client)] for _ in range(CHAINS)]
    codes = [f"crash-code-{n:03d}-" + "c" * 30 for n in range(CODES)]
    for code in codes:
        token_service.create_authorization_code(
            code=code,
            oauth_client=oauth_client,
            user=user,
            redirect_uri=IFTTT_REDIRECT,
            scope="ifttt",
            code_challenge=None,
            code_challenge_method=None,
        )
    db.session.remove()
    received = Received(chains=chains, codes=list(codes))
    server = server_factory(workers=2)
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=refresh_loop, args=(server.base_url, credentials, chain, received, stop)
        )
        for chain in chains
    ] + [
        threading.Thread(target=exchange_loop, args=(server.base_url, credentials, received, stop))
        for _ in range(EXCHANGERS)
    ]
    for thread in threads:
        thread.start()
    baseline = CHAINS
    deadline = time.monotonic() + 60
    while received.count() - baseline < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.02)
    kill_group(server)
    stop.set()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT + 5)
    assert not any(thread.is_alive() for thread in threads), "client threads hung"
    assert not received.unexpected, received.unexpected
    issued = received.count() - baseline
    assert issued >= KILL_AFTER, f"only {issued} responses before the deadline"
    # The kill must have cut requests off mid-flight, or it proved nothing.
    assert received.interrupted >= 1

    lost_answers = rotated_but_unreceived(received)
    restarted = server_factory(workers=2, port=server.port)
    check_received_tokens_work(restarted.base_url, credentials, received)
    check_no_half_state()
    print(
        f"crash: {issued} token responses received, {received.interrupted} cut off, "
        f"{lost_answers} rotations committed whose answer was lost"
    )


def rotated_but_unreceived(received: Received) -> int:
    """Count chains whose newest received token was rotated by a cut-off request."""
    db.session.remove()
    newest = [hash_token(chain[-1]["refresh_token"]) for chain in received.chains]
    return len(
        db.session.scalars(
            select(RefreshToken.id).where(
                RefreshToken.token_hash.in_(newest), RefreshToken.rotated_at.is_not(None)
            )
        ).all()
    )


def check_received_tokens_work(
    base_url: str, credentials: tuple[str, str], received: Received
) -> None:
    client_id, secret = credentials
    with requests.Session() as session:
        for chain in received.chains:
            for pair in chain:
                info = session.get(
                    base_url + "/ifttt/v1/user/info",
                    timeout=REQUEST_TIMEOUT,
                    headers={"Authorization": "Bearer " + pair["access_token"]},
                )
                assert info.status_code == 200, info.text
        for chain in received.chains:
            # The newest refresh token the client holds. If its own rotation committed
            # but the answer was cut off, the grace window hands out that successor.
            response = session.post(
                base_url + "/oauth/token",
                timeout=REQUEST_TIMEOUT,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": chain[-1]["refresh_token"],
                    "client_id": client_id,
                    "client_secret": secret,
                },
            )
            assert response.status_code == 200, response.text
            follow_up = session.post(
                base_url + "/oauth/token",
                timeout=REQUEST_TIMEOUT,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": response.json()["refresh_token"],
                    "client_id": client_id,
                    "client_secret": secret,
                },
            )
            assert follow_up.status_code == 200, follow_up.text


def check_no_half_state() -> None:
    db.session.remove()
    child = aliased(RefreshToken)
    children = (
        select(func.count()).select_from(child).where(child.parent_id == RefreshToken.id)
    ).scalar_subquery()
    rotated = db.session.execute(
        select(RefreshToken.id, RefreshToken.family_id, children).where(
            RefreshToken.rotated_at.is_not(None)
        )
    ).all()
    assert rotated, "no rotation happened"
    half_rotated = [row for row in rotated if row[2] != 1]
    assert not half_rotated, f"rotated without exactly one successor: {half_rotated}"
    # Nothing here was reused or replayed outside its grace, so no family was revoked.
    revoked = db.session.scalars(select(TokenFamily.id).where(TokenFamily.revoked_at.is_not(None)))
    assert list(revoked) == []
    claimed_without_tokens = db.session.scalars(
        select(AuthorizationCode.id).where(
            AuthorizationCode.used_at.is_not(None), AuthorizationCode.family_id.is_(None)
        )
    )
    assert list(claimed_without_tokens) == []
    families = db.session.scalars(select(TokenFamily.id)).all()
    for family_id in families:
        access = db.session.scalar(
            select(func.count()).select_from(AccessToken).where(AccessToken.family_id == family_id)
        )
        live_refresh = db.session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.rotated_at.is_(None))
        )
        assert access is not None
        assert access >= 1, f"family {family_id} has no access token"
        assert live_refresh == 1, f"family {family_id} has {live_refresh} unrotated tokens"
