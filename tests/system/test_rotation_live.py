"""Rotate a client secret while a real server runs: no downtime, then a clean cut-off."""

from __future__ import annotations

import json
import time

import pytest
import requests
from sqlalchemy import select

from authserver.clock import utcnow
from authserver.database import db
from authserver.models import AuditEvent
from authserver.models import CredentialSecret
from tests.factories import make_tokens

pytestmark = pytest.mark.slow

# Long enough that the two requests right after the rotation land inside it on a busy
# 2-core machine, short enough that the test waits only seconds for the cut-off.
OVERLAP_SECONDS = 4
REQUEST_TIMEOUT = 30


def test_old_secret_works_during_overlap_and_stops_after(
    server_factory, cli, user, oauth_client, client_secret
):
    server = server_factory(workers=2)
    http = requests.Session()
    refresh_token = make_tokens(user, oauth_client)["refresh_token"]

    def refresh(secret: str) -> requests.Response:
        nonlocal refresh_token
        response = http.post(
            server.base_url + "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": "ifttt",
                "client_secret": secret,
            },
            timeout=REQUEST_TIMEOUT,
        )
        if response.status_code == 200:
            refresh_token = response.json()["refresh_token"]
        return response

    assert refresh(client_secret).status_code == 200
    result = cli.invoke(
        args=["clients", "rotate-secret", "ifttt", "--overlap", f"{OVERLAP_SECONDS}s", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    new_secret = json.loads(result.stdout)["client_secret"]
    expires_at = db.session.scalars(
        select(CredentialSecret.expires_at).where(CredentialSecret.expires_at.is_not(None))
    ).one()
    assert expires_at is not None
    db.session.commit()

    # Both secrets work on the running server, without a restart.
    assert refresh(client_secret).status_code == 200
    assert refresh(new_secret).status_code == 200
    assert utcnow() < expires_at, "the machine was too slow to test inside the overlap"

    # The old secret works until the overlap ends and not a moment after.
    deadline = time.monotonic() + OVERLAP_SECONDS + 20
    while True:
        assert time.monotonic() < deadline, "the old secret never stopped working"
        sent = utcnow()
        response = refresh(client_secret)
        answered = utcnow()
        if response.status_code == 200:
            assert sent < expires_at
        else:
            assert response.status_code == 401
            assert response.json()["error"] == "invalid_client"
            assert answered >= expires_at
            break
        time.sleep(0.25)

    assert refresh(new_secret).status_code == 200
    db.session.rollback()
    used_old = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event_type == "secret.used_old")
    ).all()
    assert [row.client_id for row in used_old][:1] == ["ifttt"]
    failed = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event_type == "client.auth_failed")
    ).all()
    assert [row.client_id for row in failed] == ["ifttt"]
