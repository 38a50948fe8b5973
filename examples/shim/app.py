"""A tiny IFTTT shim: service status, test setup and one trigger, on authserver.shim.

Run it next to an authserver (see README.md in this folder)::

    AUTHSERVER_URL=https://auth.example.com \
    SHIM_SERVER_ID=rs_... SHIM_SERVER_SECRET=... \
    IFTTT_SERVICE_KEY=... \
    SHIM_TEST_TOKEN_COMMAND="authserver tokens issue --user demo --client ifttt --json" \
    python examples/shim/app.py
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shlex
import subprocess
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import Flask
from flask import Response
from flask import jsonify
from flask import request

from authserver.shim import IntrospectionVerifier
from authserver.shim import ShimProtector
from authserver.shim import current_token
from authserver.shim import ifttt_error

TRIGGER_SLUG = "new_thing"
# What test/setup hands IFTTT's endpoint tests as sample trigger fields.
SAMPLES = {
    "triggers": {TRIGGER_SLUG: {"topic": "news"}},
    "triggerFieldValidations": {TRIGGER_SLUG: {"topic": {"valid": "news", "invalid": ""}}},
}


class TestTokenError(Exception):
    """The test token for IFTTT's endpoint tests could not be minted."""


def create_app(
    *,
    introspection_url: str,
    server_id: str,
    secret: str,
    service_key: str,
    test_access_token: Callable[[], str],
    cache_seconds: float = 30.0,
    timeout: float = 3.0,
) -> Flask:
    """Build the shim; ``test_access_token`` returns the token test/setup hands IFTTT."""
    app = Flask(__name__)
    verifier = IntrospectionVerifier(
        introspection_url,
        server_id=server_id,
        secret=secret,
        cache_seconds=cache_seconds,
        timeout=timeout,
    )
    require_token = ShimProtector(verifier)
    app.extensions["shim.verifier"] = verifier

    def service_key_ok() -> bool:
        presented = (
            request.headers.get("IFTTT-Service-Key")
            or request.headers.get("IFTTT-Channel-Key")
            or ""
        )
        # Constant-time comparison of equal-length digests: no timing leak of the key.
        return hmac.compare_digest(
            hashlib.sha256(presented.encode()).digest(),
            hashlib.sha256(service_key.encode()).digest(),
        ) and bool(presented)

    @app.get("/ifttt/v1/status")
    def status() -> Response:
        if not service_key_ok():
            return ifttt_error("Invalid service key.", 401)
        return Response(status=200)

    @app.post("/ifttt/v1/test/setup")
    def test_setup() -> Response:
        if not service_key_ok():
            return ifttt_error("Invalid service key.", 401)
        try:
            token = test_access_token()
        except TestTokenError as error:
            app.logger.error("%s", error)
            return ifttt_error("No test token is available right now.", 503)
        response = jsonify(data={"accessToken": token, "samples": SAMPLES})
        response.headers["Content-Type"] = "application/json; charset=utf-8"
        return response

    @app.post("/ifttt/v1/triggers/<slug>")
    @require_token("ifttt")
    def trigger(slug: str) -> Response:
        if slug != TRIGGER_SLUG:
            return ifttt_error(f"Unknown trigger {slug!r}.", 404)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            body = {}
        fields = body.get("triggerFields")
        topic = fields.get("topic") if isinstance(fields, dict) else None
        if not isinstance(topic, str) or not topic:
            return ifttt_error("triggerFields.topic is required.", 400)
        limit = body.get("limit", 50)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            limit = 50
        items = _events(str(current_token["sub"]), topic)[:limit]
        response = jsonify(data=items)
        response.headers["Content-Type"] = "application/json; charset=utf-8"
        return response

    return app


def _events(user_id: str, topic: str) -> list[dict[str, Any]]:
    """Return this user's events, newest first (IFTTT expects at least three)."""
    base = datetime(2030, 1, 1, tzinfo=UTC)
    events = []
    for n in range(5, 0, -1):
        moment = base + timedelta(hours=n)
        events.append(
            {
                "title": f"{topic} #{n}",
                "created_at": moment.isoformat(),
                "meta": {"id": f"{user_id}-{topic}-{n}", "timestamp": int(moment.timestamp())},
            }
        )
    return events


def token_from_command(command: str) -> Callable[[], str]:
    """Return a provider that runs e.g. ``authserver tokens issue ... --json`` per call.

    A fresh token per test run never expires mid-run, and it is committed before the
    command exits, so IFTTT can use it at once.
    """

    def _issue() -> str:
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own configured command
                shlex.split(command),
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            return str(json.loads(done.stdout)["access_token"])
        except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError) as error:
            raise TestTokenError(f"test token command failed: {type(error).__name__}") from None

    return _issue


def main() -> None:
    """Run the shim with settings from the environment (development server)."""
    base = os.environ["AUTHSERVER_URL"].rstrip("/")
    command = os.environ.get("SHIM_TEST_TOKEN_COMMAND")
    app = create_app(
        introspection_url=base + "/oauth/introspect",
        server_id=os.environ["SHIM_SERVER_ID"],
        secret=os.environ["SHIM_SERVER_SECRET"],
        service_key=os.environ["IFTTT_SERVICE_KEY"],
        test_access_token=token_from_command(command)
        if command
        else lambda: os.environ["SHIM_TEST_ACCESS_TOKEN"],
        cache_seconds=float(os.environ.get("SHIM_CACHE_SECONDS", "30")),
    )
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))


if __name__ == "__main__":
    main()
