"""Prometheus metrics, multiprocess-aware so every gunicorn worker is counted."""

from __future__ import annotations

import glob
import hmac
import os
from typing import Any

from flask import Flask
from flask import Response
from flask import abort
from flask import request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess

from . import error_formats
from . import signals

# /metrics is for machines: its errors (a hidden 404 included) are JSON.
error_formats.declare("metrics", "json", prefixes=("/metrics",))

REQUESTS = Counter(
    "authserver_http_requests_total",
    "HTTP requests by endpoint, method and status",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "authserver_http_request_duration_seconds",
    "Request latency by endpoint and status",
    ["endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS = {
    "issued": Counter("authserver_tokens_issued_total", "Token families issued"),
    "refreshed": Counter("authserver_tokens_refreshed_total", "Successful refreshes"),
    "family_revoked": Counter("authserver_families_revoked_total", "Token families revoked"),
    "replays": Counter("authserver_refresh_replays_total", "Grace-period replays answered"),
    "reuse": Counter("authserver_refresh_reuse_detected_total", "Refresh token reuse detected"),
    "client_auth_failed": Counter(
        "authserver_client_auth_failures_total", "Failed client authentications"
    ),
    "login_failed": Counter("authserver_login_failures_total", "Failed logins"),
    "rate_limited": Counter("authserver_rate_limited_total", "Requests refused with 429"),
    "limit_storage_error": Counter(
        "authserver_rate_limit_storage_errors_total",
        "Redis errors after which rate limits used per-process counters",
    ),
    "db_error": Counter("authserver_db_errors_total", "Requests failed by database errors"),
}


# The labelled children, by (endpoint, method, status): prometheus-client's labels()
# checks, locks and builds its key on every call; this is one dict lookup.
_Children = tuple[Any, Any]
_children: dict[tuple[str, str, int], _Children] = {}


def _children_of(endpoint: str, method: str, status: int) -> _Children:
    key = (endpoint, method, status)
    found = _children.get(key)
    if found is None:
        code = str(status)
        found = (REQUESTS.labels(endpoint, method, code), LATENCY.labels(endpoint, code))
        _children[key] = found
    return found


class _ReadyFilesCollector(multiprocess.MultiProcessCollector):
    """prometheus-client's multiprocess collector, minus files still being created.

    A worker that is starting opens its metric file and only then sizes it: read in
    between, the empty file fails the whole scrape (a 500, seen while gunicorn starts
    or replaces a worker). An empty file holds no values, so it is skipped.
    """

    def __init__(self, path: str, registry: CollectorRegistry) -> None:
        super().__init__(registry, path)  # type: ignore[no-untyped-call]
        self.folder = path

    def collect(self) -> Any:
        """Merge every metric file that has been sized."""
        files = [path for path in glob.glob(os.path.join(self.folder, "*.db")) if _sized(path)]
        return self.merge(files, accumulate=True)  # type: ignore[no-untyped-call]


def _sized(path: str) -> bool:
    # A dead worker's file may also vanish between listing and reading.
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


def _counting(name: str) -> Any:
    counter = EVENTS[name]

    def receiver(sender: Any, **extra: Any) -> None:
        counter.inc()

    return receiver


# Held here, so blinker's weak references to the receivers stay alive.
_RECEIVERS = (
    (signals.token_issued, _counting("issued")),
    (signals.token_refreshed, _counting("refreshed")),
    (signals.family_revoked, _counting("family_revoked")),
    (signals.refresh_replayed, _counting("replays")),
    (signals.reuse_detected, _counting("reuse")),
    (signals.client_auth_failed, _counting("client_auth_failed")),
    (signals.login_failed, _counting("login_failed")),
    (signals.rate_limited, _counting("rate_limited")),
    (signals.limit_storage_failed, _counting("limit_storage_error")),
    (signals.database_unavailable, _counting("db_error")),
)


def observe_request(endpoint: str, method: str, status: int, seconds: float | None) -> None:
    """Count one answered request and, when it was timed, its latency."""
    requests, latency = _children_of(endpoint, method, status)
    if seconds is not None:
        latency.observe(seconds)
    requests.inc()


def init_metrics(app: Flask) -> None:
    """Count the events signalled and serve /metrics (requests: ``observe_request``).

    The counters are per process (gunicorn workers merge them through
    PROMETHEUS_MULTIPROC_DIR), so subscribing again for another app is a no-op.
    """
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver)

    @app.get("/metrics")
    def metrics() -> Response:
        token = str(app.config["METRICS_TOKEN"])
        presented = request.headers.get("Authorization", "")
        # Hidden (404) rather than 401, so scanners learn nothing.
        if not token or not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
            abort(404)
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder:
            registry = CollectorRegistry()
            _ReadyFilesCollector(folder, registry)
            payload = generate_latest(registry)
        else:
            payload = generate_latest()
        return Response(payload, mimetype=CONTENT_TYPE_LATEST)
