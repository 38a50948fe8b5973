"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import jsonify

from .. import error_formats
from ..limits import redis_status
from ..migrations_state import database_state

bp = Blueprint("health", __name__)
error_formats.declare(bp, "json", prefixes=("/readyz", "/healthz"))


# jsonify(status="ok")'s exact body, encoded once: the probe is called often, and
# Flask's JSON provider built an encoder and serialized the same dict on every call.
_HEALTHY = '{"status":"ok"}\n'


@bp.get("/healthz")
def healthz() -> Response:
    """Answer 200 while the process serves requests (no database work)."""
    return Response(_HEALTHY, mimetype="application/json")


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """Answer 200 when the database answers and its schema is at the head revision.

    Redis is reported but never makes the instance unready: it only shares rate-limit
    counters, and the limiter falls back to per-process counters without it.
    """
    state = database_state()
    redis = redis_status()
    if state.ready:
        return jsonify(status="ready", revision=state.current, redis=redis)
    return jsonify(status="unavailable", reason=state.reason, redis=redis), 503
