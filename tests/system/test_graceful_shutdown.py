"""SIGTERM lets an in-flight request finish before the server exits.

There is no slow endpoint, so the client makes the request slow: it sends the
headers and half of the token request's body, and gunicorn's sync worker sits inside
the view reading the rest. SIGTERM arrives in that moment; the client then sends the
rest and must get the full 200 answer before the server exits cleanly.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from urllib.parse import urlencode

from sqlalchemy import select

from authserver.database import db
from authserver.models import RefreshToken
from authserver.security import hash_token
from tests.factories import make_tokens

GRACEFUL_TIMEOUT = 30  # `authserver serve`'s default --graceful-timeout


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response to EOF (the server closes after it)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def test_sigterm_finishes_in_flight_request_before_exit(
    app, user, oauth_client, client_secret, server_factory
):
    tokens = make_tokens(user, oauth_client)
    server = server_factory(workers=2)
    body = urlencode(
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
        }
    ).encode()
    head = (
        f"POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    half = len(body) // 2
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head + body[:half])
        # Long enough for a worker to accept, parse the headers and block on the body.
        time.sleep(1.0)
        server.process.send_signal(signal.SIGTERM)
        terminated_at = time.monotonic()
        time.sleep(1.0)
        # The master waits for the busy worker instead of exiting.
        assert server.process.poll() is None, server.log()
        sock.sendall(body[half:])
        status, headers, payload = read_response(sock)

    assert status == 200, payload
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(payload)
    assert answer["token_type"] == "Bearer"
    returncode = server.process.wait(timeout=GRACEFUL_TIMEOUT + 10)
    exit_seconds = time.monotonic() - terminated_at
    assert returncode == 0, server.log()
    # It exits once the request is done, not when the graceful timeout runs out.
    assert exit_seconds < GRACEFUL_TIMEOUT / 2, exit_seconds
    # What the client received was committed: the new refresh token is the live one.
    db.session.remove()
    row = db.session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(answer["refresh_token"]))
    )
    assert row is not None
    assert row.rotated_at is None
    # The port is free again (SO_REUSEADDR, as any server binds: our own TIME_WAIT
    # connection must not count).
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))
    assert "Traceback" not in server.log()
    print(f"graceful: exited {exit_seconds:.2f}s after SIGTERM, in-flight request answered")
