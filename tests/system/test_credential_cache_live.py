"""The credential cache across gunicorn workers: a change made elsewhere is seen at once.

Both workers of a real server first answer with the secret cached, then another
process (this test) disables, rotates or deletes; the very next requests, whichever
worker takes them, must already be refused.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from sqlalchemy import update

from authserver.database import db
from authserver.models import ResourceServer
from authserver.services import clients as client_service
from tests.factories import make_tokens

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT = 30
MAX_REQUESTS = 200


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


def on_both_workers(server, call, status):
    """Repeat ``call`` until both workers answered it with ``status``; never another."""
    for _ in range(MAX_REQUESTS):
        assert call().status_code == status
        if len(pids_answering(server, status)) == 2:
            return
    pytest.fail(f"one worker took all {MAX_REQUESTS} requests")


@pytest.fixture
def shim(app):
    server, secret = client_service.register_resource_server("Shim")
    return server.server_id, secret


@pytest.fixture
def token(user, oauth_client):
    return make_tokens(user, oauth_client)["access_token"]


def test_disable_seen_by_every_worker_at_once(server_factory, shim, token):
    server = server_factory(workers=2)
    on_both_workers(server, lambda: introspect(server, shim[0], shim[1], token), 200)
    db.session.execute(
        update(ResourceServer).where(ResourceServer.server_id == shim[0]).values(disabled=True)
    )
    db.session.commit()
    on_both_workers(server, lambda: introspect(server, shim[0], shim[1], token), 401)


def test_rotated_out_secret_refused_by_every_worker_at_once(server_factory, shim, token):
    server = server_factory(workers=2)
    on_both_workers(server, lambda: introspect(server, shim[0], shim[1], token), 200)
    owner = client_service.require_resource_server(shim[0])
    issued = client_service.rotate_secret(owner, overlap=timedelta(0), owner_id=shim[0])
    on_both_workers(server, lambda: introspect(server, shim[0], shim[1], token), 401)
    for _ in range(10):
        assert introspect(server, shim[0], issued.secret, token).status_code == 200
