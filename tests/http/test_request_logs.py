import contextlib
import io
import json
import logging
import os
import re
from typing import Any

import pytest

from authserver.logs import JsonFormatter
from authserver.services import clients as client_service

from ..conftest import csrf_token_of
from ..factories import PASSWORD
from ..factories import authorize_url
from ..factories import basic_auth
from ..factories import query_of

JSON_LOGS = pytest.mark.app_config(LOG_FORMAT="json")
HEX_ID = re.compile(r"[0-9a-f]{32}")


def app_handler():
    handlers = [
        h for h in logging.getLogger("authserver").handlers if getattr(h, "_authserver", False)
    ]
    assert len(handlers) == 1
    return handlers[0]


def request_lines(caplog):
    """The request log lines, rendered by the app's own handler and parsed back."""
    formatter = app_handler().formatter
    return [
        json.loads(formatter.format(r)) for r in caplog.records if r.name == "authserver.request"
    ]


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO, logger="authserver")
    return caplog


@JSON_LOGS
def test_every_request_logs_one_json_line_with_the_request_fields(http, logs):
    http.get("/healthz", headers={"X-Request-ID": "probe-1"})
    http.get("/no-such-page", headers={"X-Request-ID": "probe-2"})
    http.post("/oauth/token", data={"grant_type": "password"}, headers={"X-Request-ID": "probe-3"})
    lines = request_lines(logs)
    assert [line["request_id"] for line in lines] == ["probe-1", "probe-2", "probe-3"]
    health, missing, token = lines
    for line in lines:
        assert {
            "time",
            "level",
            "method",
            "route",
            "status",
            "duration_ms",
            "client_id",
            "user_id",
            "request_id",
        } <= set(line)
        assert line["time"].endswith("+00:00")
        assert isinstance(line["duration_ms"], float)
    assert (health["method"], health["route"], health["status"]) == ("GET", "/healthz", 200)
    assert (missing["route"], missing["status"]) == (None, 404)
    assert (token["method"], token["route"], token["status"]) == ("POST", "/oauth/token", 400)


@JSON_LOGS
def test_request_id_generated_when_absent_and_echoed(http, logs):
    response = http.get("/healthz")
    generated = response.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(generated)
    assert request_lines(logs)[-1]["request_id"] == generated
    assert http.get("/healthz").headers["X-Request-ID"] != generated


@JSON_LOGS
def test_request_id_of_caller_echoed_when_printable(http, logs):
    rid = "1f1d9ab2-7c4e-4d1a-9c6b-2f4b2d9e8a10"
    response = http.get("/healthz", headers={"X-Request-ID": rid})
    assert response.headers["X-Request-ID"] == rid
    assert request_lines(logs)[-1]["request_id"] == rid


@JSON_LOGS
@pytest.mark.parametrize(
    "hostile",
    ["a" * 129, "abc\x01def", "abc\x7fdef", "two words", 'x"}{"level":"ERROR', "é" * 8],
    ids=["too-long", "control-char", "delete-char", "space", "json-injection", "non-ascii"],
)
def test_hostile_request_id_replaced(http, logs, hostile):
    response = http.get("/healthz", headers={"X-Request-ID": hostile})
    replaced = response.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(replaced)
    assert request_lines(logs)[-1]["request_id"] == replaced


@JSON_LOGS
def test_request_id_echoed_when_csrf_rejects_before_the_view(http, logs):
    response = http.post(
        "/login", data={"username": "x", "password": "y"}, headers={"X-Request-ID": "csrf-probe"}
    )
    assert response.status_code == 400
    assert response.headers["X-Request-ID"] == "csrf-probe"
    assert request_lines(logs)[-1]["request_id"] == "csrf-probe"


@JSON_LOGS
def test_log_lines_name_client_and_user_of_token_user_info_and_introspection(
    http, logs, user, oauth_client, client_secret, get_code, exchange
):
    tokens = exchange(
        get_code(user, oauth_client), oauth_client.client_id, client_secret
    ).get_json()
    http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    server, rs_secret = client_service.register_resource_server("Shim")
    http.post(
        "/oauth/introspect",
        data={"token": tokens["access_token"]},
        headers=basic_auth(server.server_id, rs_secret),
    )
    http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": oauth_client.client_id,
            "client_secret": "wrong",
        },
    )
    by_route: dict[tuple[str, int], dict[str, Any]] = {}
    for line in request_lines(logs):
        by_route.setdefault((line["route"], line["status"]), line)
    who = {key: (line["client_id"], line["user_id"]) for key, line in by_route.items()}
    assert who[("/oauth/authorize", 302)] == (oauth_client.client_id, user.public_id)
    assert who[("/oauth/token", 200)] == (oauth_client.client_id, user.public_id)
    assert who[("/ifttt/v1/user/info", 200)] == (oauth_client.client_id, user.public_id)
    assert who[("/oauth/introspect", 200)] == (server.server_id, user.public_id)
    # A failed client authentication still names the client id it claimed.
    assert who[("/oauth/token", 401)] == (oauth_client.client_id, None)


def test_text_format_gives_plain_lines(http, logs):
    http.get("/healthz", headers={"X-Request-ID": "plain-1"})
    handler = app_handler()
    assert not isinstance(handler.formatter, JsonFormatter)
    record = next(r for r in logs.records if r.name == "authserver.request")
    line = handler.formatter.format(record)
    assert "INFO authserver.request GET /healthz 200" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


@JSON_LOGS
def test_no_token_secret_password_or_code_in_any_log_record(
    http, caplog, user, oauth_client, client_secret, exchange
):
    # Everything, including Authlib's and SQLAlchemy's loggers, at DEBUG.
    caplog.set_level(logging.DEBUG)
    for name in ("authserver", "authlib", "sqlalchemy", "werkzeug"):
        caplog.set_level(logging.DEBUG, logger=name)
    server, rs_secret = client_service.register_resource_server("Shim")
    secrets_seen = [PASSWORD, client_secret, rs_secret]

    page = http.get("/login")
    http.post(
        "/login",
        data={
            "csrf_token": csrf_token_of(page.get_data(as_text=True)),
            "username": user.username,
            "password": PASSWORD + "x",
        },
    )
    page = http.get("/login")
    http.post(
        "/login",
        data={
            "csrf_token": csrf_token_of(page.get_data(as_text=True)),
            "username": user.username,
            "password": PASSWORD,
        },
    )
    url = authorize_url(oauth_client.client_id)
    page = http.get(url)
    decided = http.post(
        url, data={"csrf_token": csrf_token_of(page.get_data(as_text=True)), "decision": "allow"}
    )
    code = query_of(decided.headers["Location"])["code"]
    first = exchange(code, oauth_client.client_id, client_secret).get_json()
    second = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
        },
    ).get_json()
    http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": oauth_client.client_id,
            "client_secret": client_secret + "x",
        },
    )
    http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {second['access_token']}"})
    http.post(
        "/oauth/introspect",
        data={"token": second["access_token"]},
        headers=basic_auth(server.server_id, rs_secret),
    )
    http.post(
        "/oauth/revoke",
        data={"token": second["refresh_token"]},
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    # A replayed code is logged as a security event (with ids only).
    assert exchange(code, oauth_client.client_id, client_secret).status_code == 400
    secrets_seen += [
        code,
        first["access_token"],
        first["refresh_token"],
        second["access_token"],
        second["refresh_token"],
    ]

    assert len(caplog.records) > 20
    json_formatter = JsonFormatter()
    for record in caplog.records:
        rendered = record.getMessage() + json_formatter.format(record)
        for raw in secrets_seen:
            assert raw not in rendered, f"{record.name}: {rendered[:300]}"


class DirectLines:
    """The request lines on our handler's stream, and the records logging handled."""

    def __init__(self, handler):
        self.handler = handler
        self.stream = io.StringIO()
        self.records = []

    def __call__(self):
        parsed = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [line for line in parsed if line["logger"] == "authserver.request"]

    @contextlib.contextmanager
    def alone(self):
        """Leave our handler alone in the logging tree, as in production.

        pytest attaches its capture handlers to the root logger and to every logger
        that does not propagate, at the start of each test phase: they are set aside
        here, within the phase, and put back before it ends.
        """
        root, ours = logging.getLogger(), logging.getLogger("authserver")
        saved = root.handlers, ours.handlers
        root.handlers, ours.handlers = [], [self.handler]
        try:
            yield
        finally:
            root.handlers, ours.handlers = saved


@pytest.fixture
def direct_lines(monkeypatch):
    """Our handler writing to a string, and a spy on the request logger's records."""
    lines = DirectLines(app_handler())
    monkeypatch.setattr(lines.handler, "stream", lines.stream)
    request_logger = logging.getLogger("authserver.request")
    handle = request_logger.handle

    def spy(record):
        lines.records.append(record)
        handle(record)

    monkeypatch.setattr(request_logger, "handle", spy)
    return lines


@JSON_LOGS
def test_request_line_written_directly_matches_the_formatters_rendering(http, direct_lines):
    with direct_lines.alone():
        http.get("/healthz", headers={"X-Request-ID": "direct-1"})
    (line,) = direct_lines()
    assert direct_lines.records == []
    fields = {key: line[key] for key in line if key not in ("time", "level", "logger", "pid")}
    message = fields.pop("message")
    record = logging.makeLogRecord(
        {"name": "authserver.request", "levelno": logging.INFO, "levelname": "INFO"}
        | {"msg": message, **fields}
    )
    rendered = json.loads(app_handler().formatter.format(record))
    assert list(line) == list(rendered)
    assert {k: v for k, v in line.items() if k != "time"} == {
        k: v for k, v in rendered.items() if k != "time"
    }
    assert line["pid"] == os.getpid()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])
    assert (line["route"], line["status"], line["request_id"]) == ("/healthz", 200, "direct-1")
    assert line["message"].startswith("GET /healthz 200 ")


@JSON_LOGS
def test_request_line_written_directly_escapes_a_hostile_client_id(http, direct_lines):
    hostile = 'x"}, {"level": "ERROR\\é'
    with direct_lines.alone():
        http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": "r",
                "client_id": hostile,
                "client_secret": "s",
            },
        )
    (line,) = direct_lines()
    assert direct_lines.records == []
    assert line["client_id"] == hostile
    assert line["level"] == "INFO"


class Collecting(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@JSON_LOGS
def test_request_line_goes_through_logging_when_anything_else_listens(http, direct_lines):
    listener = Collecting()
    request_logger = logging.getLogger("authserver.request")
    request_logger.addHandler(listener)
    try:
        with direct_lines.alone():
            http.get("/healthz", headers={"X-Request-ID": "listened-1"})
    finally:
        request_logger.removeHandler(listener)
    (line,) = direct_lines()
    assert line["request_id"] == "listened-1"
    assert [(r.request_id, r.route) for r in listener.records] == [("listened-1", "/healthz")]
    assert direct_lines.records == listener.records
