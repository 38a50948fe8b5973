"""Structured logging: one JSON line per request, with the X-Request-ID."""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from datetime import UTC
from datetime import datetime
from typing import Any

from flask import Flask
from flask import Response
from flask import g
from flask import request

request_log = logging.getLogger("authserver.request")
# A request id is echoed into headers and logs: keep it short and printable.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# One encoder for every line: json.dumps(..., default=str) would build a new one each time.
_encode = json.JSONEncoder(default=str).encode


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# C0 and C1 controls, DEL, and the Unicode line separators and bidirectional
# overrides: what can move a terminal's cursor or reorder what an admin reads.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """Show control characters as escapes (ESC as a backslash, x, 1b): text goes inert.

    Usernames and client ids typed by attackers reach the text log and the
    ``audit`` table; raw, ESC [2K CR would erase and forge lines on screen.
    """
    return _CONTROLS.sub(lambda match: _escape(match.group()), text)


class TextFormatter(logging.Formatter):
    """The human-readable format, with control characters escaped in each line."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        """Format the line (not the traceback, whose newlines are its own)."""
        return escape_controls(super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    """Format records as one JSON object per line."""

    # The date and time down to the second, rebuilt only when the second changes.
    _second = -1
    _prefix = ""

    def timestamp(self, created: float) -> str:
        """Return the record's creation time as ISO 8601 UTC with milliseconds."""
        second = int(created)
        if second != self._second:
            # Called under the handler's lock, so the two fields change together.
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        """Render the record, its extra fields and any exception as JSON."""
        entry: dict[str, Any] = {
            "time": self.timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            # Which gunicorn worker wrote the line.
            "pid": record.process,
            "message": record.getMessage(),
        }
        # The extra fields: a set difference in C, then only a handful of keys to look at
        # (a loop over every attribute of the record cost 38k instructions a line).
        fields = vars(record)
        for key in sorted(fields.keys() - _RESERVED):
            if not key.startswith("_"):
                entry[key] = fields[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


def configure_logging(log_format: str) -> None:
    """Send our loggers to stderr in the chosen format (idempotent)."""
    root = logging.getLogger("authserver")
    for handler in list(root.handlers):
        if getattr(handler, "_authserver", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._authserver = True  # type: ignore[attr-defined]
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Every record otherwise looks up its thread's and multiprocessing process's
    # names (the logging docs' own optimization advice): no format of ours shows
    # them, and a request line is written on every call.
    logging.logThreads = False
    logging.logMultiprocessing = False


def request_id() -> str:
    """Return this request's id (the caller's X-Request-ID, or a new one)."""
    value: str = g.get("request_id") or "-"
    return value


def note_request(*, client_id: str | None = None, user_id: str | None = None) -> None:
    """Record who the request was for (client id, user public id) in its log line."""
    if client_id is not None:
        g.log_client_id = client_id
    if user_id is not None:
        g.log_user_id = user_id


def _assign_request_id() -> str:
    rid: str | None = g.get("request_id")
    if rid is None:
        incoming = request.headers.get("X-Request-ID", "")
        # Anything else (too long, control characters, spaces) is replaced, so a caller
        # cannot forge log lines or bloat headers through it.
        # A request id is a label, not a secret: Python's own generator (reseeded in
        # each forked worker) spares the getrandom() system call of secrets.token_hex.
        rid = (
            incoming
            if incoming and _REQUEST_ID.fullmatch(incoming)
            else f"{random.getrandbits(128):032x}"
        )
        g.request_id = rid
    return rid


def init_request_logging(app: Flask) -> None:
    """Assign a request id, echo it back, and log one line per request."""

    @app.before_request
    def _start() -> None:
        _assign_request_id()
        # Shared with the metrics hook, which times the same span.
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        # An earlier before_request hook (CSRF, rate limits) may have cut the request
        # short before _start ran: the caller's id must still be echoed.
        rid = _assign_request_id()
        response.headers["X-Request-ID"] = rid
        if not request_log.isEnabledFor(logging.INFO):
            return response
        started = g.get("started")
        duration_ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        rule = request.url_rule
        route = rule.rule if rule is not None else None
        method, status = request.method, response.status_code
        # The record is made and handled directly: Logger.info would first walk the
        # stack to find the caller's file and line, which no format of ours shows.
        request_log.handle(
            request_log.makeRecord(
                request_log.name,
                logging.INFO,
                __file__,
                0,
                "%s %s %s %.1fms",
                (method, route or "<unmatched>", status, duration_ms),
                None,
                extra={
                    "request_id": rid,
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration_ms, 2),
                    "client_id": g.get("log_client_id"),
                    "user_id": g.get("log_user_id"),
                    "remote_addr": request.remote_addr,
                },
            )
        )
        return response
