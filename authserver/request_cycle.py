"""What every request pays, in one before_request and one after_request hook.

The CSRF check, the request id and timer, the security headers, the request line,
the request metrics and the remember cookie each were a hook of their own: Flask
dispatched six functions per request and each resolved the ``request`` and ``g``
proxies again (measured in docs/performance.md). Here the proxies are resolved once
per hook, and the work runs in the order the separate hooks ran.
"""

from __future__ import annotations

import time

from flask import Flask
from flask import Response
from flask import g
from flask import request

from .app_setup import response_headers
from .app_setup import uses_session
from .extensions import csrf
from .extensions import login_manager
from .logs import assign_request_id
from .logs import log_request
from .logs import start_request
from .metrics import observe_request


def init_request_cycle(app: Flask) -> None:
    """Register the app-wide hooks: CSRF, request id, headers, log line, metrics."""
    csrf_methods = frozenset(app.config["WTF_CSRF_METHODS"])
    add_response_headers = response_headers(app)
    remember = login_manager._update_remember_cookie

    @app.before_request
    def _begin() -> None:
        req = request._get_current_object()  # type: ignore[attr-defined]
        # CSRF first: a request it refuses is logged and counted, but not timed.
        # No endpoint: routing failed (404, 405), which answers before any view runs.
        if req.method in csrf_methods and req.endpoint is not None and uses_session(req.path):
            csrf.protect()
        start_request(g._get_current_object(), req.environ)

    @app.after_request
    def _end(response: Response) -> Response:
        req = request._get_current_object()  # type: ignore[attr-defined]
        ctx_g = g._get_current_object()
        path = req.path
        # _begin may not have run (CSRF refused the request): the caller's id must
        # still be echoed.
        rid = assign_request_id(ctx_g, req.environ)
        add_response_headers(response, path, rid)
        started = ctx_g.get("started")
        seconds = time.perf_counter() - started if started is not None else None
        status = response.status_code
        log_request(ctx_g, req, status, rid, seconds)
        observe_request(req.endpoint or "unmatched", req.method, status, seconds)
        if uses_session(path):
            return remember(response)  # type: ignore[no-any-return]
        return response
