"""Structured logging: one JSON line per request, with the X-Request-ID."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
import time
from datetime import UTC
from datetime import datetime
from typing import Any

from flask import Request
from flask import g

request_log = logging.getLogger("authserver.request")
# A request id is echoed into headers and logs: keep it short and printable.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# One encoder for every line: json.dumps(..., default=str) would build a new one each time.
_encode = json.JSONEncoder(default=str).encode
_quote = json.encoder.encode_basestring_ascii


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


def _quote_or_null(value: str | None) -> str:
    return "null" if value is None else _quote(value)


# The request line as JsonFormatter renders it (same keys, order and separators),
# filled in directly: a LogRecord, the handler chain and a generic encode of the
# dict cost more than the rest of the log hook (measured in docs/performance.md).
_REQUEST_LINE = (
    '{"time": "%s", "level": "INFO", "logger": "authserver.request", "pid": %d, '
    '"message": %s, "client_id": %s, "duration_ms": %r, "method": %s, '
    '"remote_addr": %s, "request_id": %s, "route": %s, "status": %d, "user_id": %s}\n'
)


def _sole_json_handler() -> logging.StreamHandler[Any] | None:
    """Return our JSON handler if a request record would reach it and nothing else.

    Anything else listening (a handler or filter added by a deployment, pytest's
    caplog on the root logger, the text format) gets real LogRecords instead.
    """
    parent = request_log.parent
    if (
        request_log.handlers
        or request_log.filters
        or not request_log.propagate
        or parent is None
        or parent.filters
        or len(parent.handlers) != 1
        or (parent.propagate and logging.root.handlers)
    ):
        return None
    handler = parent.handlers[0]
    if (
        not getattr(handler, "_authserver", False)
        or type(handler.formatter) is not JsonFormatter
        or handler.filters
        or handler.level > logging.INFO
    ):
        return None
    return handler  # type: ignore[return-value]


# The pid goes into every line; after a fork (gunicorn's workers) it is read again.
_pid = os.getpid()


def _forked() -> None:
    global _pid  # one value per process
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


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


def assign_request_id(ctx_g: Any, environ: dict[str, Any]) -> str:
    """Return the request's id, choosing it on first call (the caller's, if printable)."""
    rid: str | None = ctx_g.get("request_id")
    if rid is None:
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        # Anything else (too long, control characters, spaces) is replaced, so a caller
        # cannot forge log lines or bloat headers through it.
        # A request id is a label, not a secret: Python's own generator (reseeded in
        # each forked worker) spares the getrandom() system call of secrets.token_hex.
        rid = (
            incoming
            if incoming and _REQUEST_ID.fullmatch(incoming)
            else f"{random.getrandbits(128):032x}"
        )
        ctx_g.request_id = rid
    return rid


def start_request(ctx_g: Any, environ: dict[str, Any]) -> None:
    """Give the request its id and note when it started (the span logged and timed)."""
    assign_request_id(ctx_g, environ)
    ctx_g.started = time.perf_counter()


def log_request(ctx_g: Any, req: Request, status: int, rid: str, seconds: float | None) -> None:
    """Log the request's one line (``seconds``: None when it was cut short untimed)."""
    if not request_log.isEnabledFor(logging.INFO):
        return
    duration_ms = seconds * 1000 if seconds is not None else 0.0
    rule = req.url_rule
    route = rule.rule if rule is not None else None
    method = req.method
    fields = {
        "request_id": rid,
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(duration_ms, 2),
        "client_id": ctx_g.get("log_client_id"),
        "user_id": ctx_g.get("log_user_id"),
        "remote_addr": req.remote_addr,
    }
    message = f"{method} {route or '<unmatched>'} {status} {duration_ms:.1f}ms"
    handler = _sole_json_handler()
    if handler is None or not _write_json_line(handler, message, fields):
        # The record is made and handled directly: Logger.info would first walk
        # the stack to find the caller's file and line, which no format shows.
        request_log.handle(
            request_log.makeRecord(
                request_log.name, logging.INFO, __file__, 0, message, (), None, extra=fields
            )
        )


def _write_json_line(
    handler: logging.StreamHandler[Any], message: str, fields: dict[str, Any]
) -> bool:
    """Write the request line straight to our handler's stream; False if it cannot.

    The line is the one JsonFormatter would make of the record; a field of another
    type than the template expects (never, today) takes the record path instead.
    """
    created = time.time()
    formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
    # Under the handler's lock, as JsonFormatter.format is (its per-second cache).
    handler.acquire()
    try:
        try:
            line = _REQUEST_LINE % (
                formatter.timestamp(created),
                _pid,
                _quote(message),
                _quote_or_null(fields["client_id"]),
                float(fields["duration_ms"]),
                _quote(fields["method"]),
                _quote_or_null(fields["remote_addr"]),
                _quote(fields["request_id"]),
                _quote_or_null(fields["route"]),
                fields["status"],
                _quote_or_null(fields["user_id"]),
            )
        except TypeError:
            return False
        try:
            stream = handler.stream
            stream.write(line)
            stream.flush()
        except Exception:  # logging must never fail a request
            handler.handleError(logging.makeLogRecord({"msg": message, **fields}))
    finally:
        handler.release()
    return True
