"""The credential cache across gunicorn workers: a change made elsewhere is seen at once.

Both workers of a real server first answer with the secret cached, then another
process (this test) disables, rotates or deletes; the very next requests, whichever
worker takes them, must already be refused.

Which sync worker accepts a connection is the kernel's choice, and on a loaded
machine one worker can win 200 accepts in a row. So a request is held half-sent:
the worker that accepted it waits for its body, and the other one must answer the
next request. Both workers answer, every time.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import update

from authserver.database import db
from authserver.models import ResourceServer
from authserver.services import clients as client_service
from tests.factories import make_tokens

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT = 30
LOG_WAIT = 10


def introspect(server, caller_id, secret, token):
    return requests.post(
        server.base_url + "/oauth/introspect",
        data={"token": token},
        auth=(caller_id, secret),
        timeout=REQUEST_TIMEOUT,
    )


def pids_answering(server, status):
    """The worker pids that logged an introspection with this status."""
    pids = set()
    for line in server.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("route") == "/oauth/introspect" and entry.get("status") == status:
            pids.add(entry["pid"])
    return pids


def held_introspection(server, caller_id, secret, token):
    """A connection whose request is sent but for its body; send it with ``.sendall``."""
    body = urlencode({"token": token}).encode()
    basic = base64.b64encode(f"{caller_id}:{secret}".encode()).decode()
    head = (
        "POST /oauth/introspect HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Basic {basic}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    held = socket.create_connection(("127.0.0.1", server.port), timeout=REQUEST_TIMEOUT)
    held.sendall(head)
    return held, body


def status_of(connection):
    reply = b""
    while chunk := connection.recv(65536):
        reply += chunk
    return int(reply.split(b" ", 2)[1])


def on_both_workers(server, credentials, token, status):
    """One introspection on each worker, both answered with ``status``.

    The held request pins the worker that accepted it, so the other one
    answers the plain request sent meanwhile.
    """
    caller_id, secret = credentials
    held, body = held_introspection(server, caller_id, secret, token)
    with held:
        assert introspect(server, caller_id, secret, token).status_code == status
        held.sendall(body)
        assert status_of(held) == status
    deadline = time.monotonic() + LOG_WAIT
    while len(pids_answering(server, status)) < 2:  # a worker may log after it answered
        assert time.monotonic() < deadline, "both workers answered, but one logged nothing"
        time.sleep(0.05)
    assert len(pids_answering(server, status)) == 2


@pytest.fixture
def shim(app):
    server, secret = client_service.register_resource_server("Shim")
    return server.server_id, secret


@pytest.fixture
def token(user, oauth_client):
    return make_tokens(user, oauth_client)["access_token"]


def test_disable_seen_by_every_worker_at_once(server_factory, shim, token):
    server = server_factory(workers=2)
    on_both_workers(server, shim, token, 200)
    db.session.execute(
        update(ResourceServer).where(ResourceServer.server_id == shim[0]).values(disabled=True)
    )
    db.session.commit()
    on_both_workers(server, shim, token, 401)


def test_rotated_out_secret_refused_by_every_worker_at_once(server_factory, shim, token):
    server = server_factory(workers=2)
    on_both_workers(server, shim, token, 200)
    owner = client_service.require_resource_server(shim[0])
    issued = client_service.rotate_secret(owner, overlap=timedelta(0), owner_id=shim[0])
    on_both_workers(server, shim, token, 401)
    for _ in range(10):
        assert introspect(server, shim[0], issued.secret, token).status_code == 200
