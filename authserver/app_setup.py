"""The init_* steps create_app runs, in order."""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Mapping
from inspect import iscoroutinefunction
from pathlib import Path
from types import CodeType
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask
from flask import Request
from flask import Response
from flask import current_app
from flask import jsonify
from flask import render_template
from flask import request
from flask.sessions import SecureCookieSession
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import InterfaceError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import error_formats
from . import resource_dir
from . import signals
from .config import load_config
from .config import validate_config
from .database import AUTOCOMMIT_READS_KEY
from .database import configure_sqlite
from .database import db
from .database import ping_after_idle
from .extensions import csrf
from .extensions import login_manager
from .files import create_private_file
from .files import make_private_folder
from .logs import configure_logging

log = logging.getLogger("authserver")

# Content Security Policy for every HTML page: our own stylesheet only, no scripts
# inline or foreign, never framed (clickjacking on the consent page).
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self' https: http://127.0.0.1:* http://localhost:*; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def content_security_policy(image_origin: str | None) -> str:
    """Return the pages' CSP, allowing images from the logo's origin when it is foreign."""
    if not image_origin:
        return CSP
    return CSP.replace("img-src 'self'", f"img-src 'self' {image_origin}")


def init_config(app: Flask, overrides: Mapping[str, Any] | None) -> None:
    """Load and validate settings, then derive Flask's own keys from them."""
    settings = load_config(app.instance_path, overrides)
    validate_config(settings)
    app.config.update(settings)
    secure = str(settings["ISSUER"]).startswith("https://")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=_sqlalchemy_url(settings["DATABASE_URL"]),
        SESSION_COOKIE_NAME="authserver_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        # Our pages send Referrer-Policy: no-referrer, so browsers omit the Referer
        # that Flask-WTF's strict https check demands (every form post would fail);
        # the session-bound CSRF token and SameSite=Lax carry the protection.
        WTF_CSRF_SSL_STRICT=False,
        # CSRF is checked by init_login's own hook, on the pages that have a session.
        WTF_CSRF_CHECK_DEFAULT=False,
        PREFERRED_URL_SCHEME="https" if secure else "http",
    )
    configure_logging(str(settings["LOG_FORMAT"]))
    if settings["PROXY_HOPS"]:
        hops = int(settings["PROXY_HOPS"])
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )


def _sqlalchemy_url(url: str) -> str:
    # psycopg 3 is the driver we ship; plain postgresql:// would pick psycopg2.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def init_database(app: Flask) -> None:
    """Bind SQLAlchemy with pool pre-ping and timeouts, and Flask-Migrate."""
    timeout = int(app.config["DB_TIMEOUT_SECONDS"])
    url = str(app.config["SQLALCHEMY_DATABASE_URI"])
    options: dict[str, Any] = {}
    sqlite_file = _sqlite_file(app, url)
    if sqlite_file is not None:
        # Before Flask-SQLAlchemy, which would create a missing instance folder 0755.
        make_private_folder(sqlite_file.parent)
    if url.startswith("postgresql"):
        if not app.config["DB_PING_AFTER_IDLE_SECONDS"]:
            options["pool_pre_ping"] = True
        options["connect_args"] = {
            "connect_timeout": timeout,
            # A stuck query must not hold a worker forever: answer 503 instead.
            "options": f"-c statement_timeout={timeout * 1000}",
        }
        options["pool_size"] = 5
        options["max_overflow"] = 5
        options["pool_timeout"] = timeout
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    app.extensions[AUTOCOMMIT_READS_KEY] = url.startswith("postgresql")
    db.init_app(app)
    idle = int(app.config["DB_PING_AFTER_IDLE_SECONDS"])
    if url.startswith("postgresql"):
        from .postgres import use_answer_deadlines

        with app.app_context():
            use_answer_deadlines(db.engine, timeout)
            if idle:
                ping_after_idle(db.engine, idle)
    if url.startswith("sqlite"):
        with app.app_context():
            configure_sqlite(db.engine, busy_timeout_seconds=timeout)
            if sqlite_file is not None:
                private_sqlite_file(db.engine, sqlite_file)
    import authserver.models  # noqa: F401 - registers every table


def _sqlite_file(app: Flask, url: str) -> Path | None:
    """Return the SQLite database file a URL names (None: not SQLite, or in memory)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if parsed.query.get("uri") or database.startswith("file:"):
        return None  # a SQLite URI names its file its own way; left to the admin
    # Flask-SQLAlchemy reads a relative path from the instance folder.
    return Path(app.instance_path, database)


def private_sqlite_file(engine: Engine, path: Path) -> None:
    """Have the SQLite file created 0600, so its WAL and SHM files are 0600 too.

    SQLite creates the database file with 0644 less the umask, and later gives the
    -wal and -shm files (deleted and created again as connections come and go) the
    database file's own mode. Creating the file first, private, covers all three,
    whatever the umask of the process that happens to create them.
    """

    @event.listens_for(engine, "do_connect")
    def _create_private(dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
        create_private_file(path)


def init_login(app: Flask) -> None:
    """Set up Flask-Login and CSRF protection."""
    from .blueprints.auth import load_user

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    # "basic", not "strong": phones switch networks mid-flow (IFTTT's app), and strong
    # mode would drop the session whenever the address changes.
    login_manager.session_protection = "basic"
    login_manager.user_loader(load_user)
    csrf.init_app(app)
    app.session_interface = MachineAwareSessionInterface()
    _drop_extension_hooks(app)


def _drop_extension_hooks(app: Flask) -> None:
    """Take Flask-WTF's and Flask-Login's own per-request hooks off the app.

    A forged cross-site request can only ride on a cookie session, and only browser
    pages open one (MachineAwareSessionInterface): machine endpoints and probes have
    no ambient credential to abuse. Flask-WTF's default hook and Flask-Login's
    remember-cookie hook otherwise run on every request (measured: about 10 % of a
    /healthz call in process); ``request_cycle`` runs their work on browser pages only.
    """
    remember = login_manager._update_remember_cookie
    app.after_request_funcs[None] = [
        hook for hook in app.after_request_funcs.get(None, []) if hook != remember
    ]
    # Flask-WTF's own hook returns at once (WTF_CSRF_CHECK_DEFAULT is off).
    app.before_request_funcs[None] = [
        hook
        for hook in app.before_request_funcs.get(None, [])
        if getattr(hook, "__qualname__", "") != "CSRFProtect.init_app.<locals>.csrf_protect"
    ]


_FORM = "application/x-www-form-urlencoded"


class AuthServerRequest(Request):
    """Flask's request, reading a URL-encoded body without the generic form parser."""

    def _load_form_data(self) -> None:
        # The token, introspection and revocation endpoints take URL-encoded forms
        # (RFC 6749 §4.1.3, RFC 7662 §2.1). Werkzeug builds a FormDataParser for each
        # (reading three limits through the app proxy) only to call what follows;
        # the body is still read through `stream`, which enforces the request's
        # max_content_length, and an undecodable body still gives an empty form, as
        # the parser's silent mode does. Anything else takes the generic path.
        if (
            "form" in self.__dict__
            or self.mimetype != _FORM
            or getattr(self, "_cached_data", None) is not None
            or _debug()
        ):
            super()._load_form_data()
            return
        stream = self.stream
        try:
            form = self.parameter_storage_class(
                parse_qsl(
                    stream.read().decode(), keep_blank_values=True, errors="werkzeug.url_quote"
                )
            )
        except ValueError:
            form = self.parameter_storage_class()
        self.__dict__.update(stream=stream, form=form, files=self.parameter_storage_class())


def _debug() -> bool:
    # Flask's debug mode attaches its own form error helpers: leave it Flask's path.
    return bool(current_app and current_app.debug)


class AuthServerFlask(Flask):
    """Flask, remembering which hooks and views are plain functions.

    Flask asks ``inspect.iscoroutinefunction`` of every hook and view on every request
    (``ensure_sync``, the method Flask documents for overriding), eight times per token
    request. The answer is a flag of the function's code object, so it is kept per code
    object: a closure made per request (``after_this_request``) shares its code with
    every other, and the cache stays as small as the program.
    """

    request_class = AuthServerRequest

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_code: dict[CodeType, bool] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``func`` itself, or Flask's sync wrapper of a coroutine function."""
        # A method forwards __code__ to its function; partials and other callables
        # have none and take Flask's own path.
        code = getattr(func, "__code__", None)
        if type(code) is not CodeType:
            return super().ensure_sync(func)
        plain = self._plain_code.get(code)
        if plain is None:
            plain = self._plain_code[code] = not iscoroutinefunction(func)
        return func if plain else self.async_to_sync(func)


# Only the browser pages use the cookie session. Everything else is called by machines
# (shims and IFTTT poll it) or by probes: no cookie is read, signed or set there and no
# "Vary: Cookie" is added, which also spares the hot paths the signing work.
BROWSER_PREFIXES = ("/login", "/logout", "/oauth/authorize", "/account/")


def uses_session(path: str) -> bool:
    """Tell whether a request path belongs to a browser page (with a session)."""
    return path == "/" or path.startswith(BROWSER_PREFIXES)


class MachineAwareSessionInterface(SecureCookieSessionInterface):
    """Flask's cookie sessions on browser pages, a null session everywhere else."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Open the cookie session, or a null session on a machine endpoint."""
        if not uses_session(request.path):
            return self.make_null_session(app)
        return super().open_session(app, request)


def init_blueprints(app: Flask) -> None:
    """Register every blueprint."""
    from .blueprints import account
    from .blueprints import auth
    from .blueprints import branding
    from .blueprints import docs
    from .blueprints import health
    from .blueprints import ifttt
    from .blueprints import oauth
    from .blueprints import shim

    for module in (auth, oauth, ifttt, account, health, docs, branding, shim):
        app.register_blueprint(module.bp)


def init_cli(app: Flask) -> None:
    """Attach the admin command groups and Flask-Migrate's ``db`` commands."""
    from flask_migrate import Migrate

    from .cli import register_commands

    Migrate(app, db, directory=resource_dir("migrations"), render_as_batch=True)
    register_commands(app)


def _no_store(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


# The headers of a response that is not a page, in the order they are added.
_NOSNIFF = ("X-Content-Type-Options", "nosniff")
_NO_REFERRER = ("Referrer-Policy", "no-referrer")
_HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
_NO_STORE = ("Cache-Control", "no-store")
_API_PREFIXES = ("/oauth/", "/ifttt/")


def response_headers(app: Flask) -> Callable[[Response, str, str], None]:
    """Return what adds the security headers (HSTS over https), then X-Request-ID."""
    from .branding import image_origin

    hsts = str(app.config["ISSUER"]).startswith("https://")
    csp = content_security_policy(image_origin(app))

    def add_page_headers(response: Response, path: str, request_id: str) -> None:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if (headers.get("Content-Type") or "").startswith("text/html"):
            headers["Content-Security-Policy"] = csp
            headers["X-Frame-Options"] = "DENY"
            # The page's language follows Accept-Language.
            response.vary.add("Accept-Language")
            # Forms carry CSRF tokens and pages may show codes: never cache them.
            _no_store(response)
        if hsts:
            headers["Strict-Transport-Security"] = _HSTS[1]
        if path.startswith(_API_PREFIXES):
            headers.setdefault("Cache-Control", "no-store")
        headers["X-Request-ID"] = request_id

    def add_response_headers(response: Response, path: str, request_id: str) -> None:
        # Every header name read in one pass: each setdefault of an absent header
        # scanned the list twice and raised (and caught) a BadRequestKeyError.
        headers = response.headers
        names: set[str] = set()
        page = False
        for name, value in headers:
            lower = name.lower()
            if lower == "content-type" and lower not in names:
                page = value.startswith("text/html")
            names.add(lower)
        # Pages, and a header this would replace rather than add, take the general
        # path (same headers, same order).
        if page or "x-request-id" in names or (hsts and "strict-transport-security" in names):
            add_page_headers(response, path, request_id)
            return
        added = []
        if "x-content-type-options" not in names:
            added.append(_NOSNIFF)
        if "referrer-policy" not in names:
            added.append(_NO_REFERRER)
        if hsts:
            added.append(_HSTS)
        if "cache-control" not in names and path.startswith(_API_PREFIXES):
            added.append(_NO_STORE)
        added.append(("X-Request-ID", request_id))
        # Appended as one slice (Headers' own slice assignment, which still checks each
        # value): extend() makes two generators and one add() call per header.
        end = len(headers)
        headers[end:end] = added

    return add_response_headers


def _json_error(
    error_format: error_formats.ErrorFormat, status: int, error: str, description: str
) -> Response:
    if error_format == "ifttt":
        response = jsonify(errors=[{"message": description}])
    else:
        response = jsonify(error=error, error_description=description)
    response.status_code = status
    _no_store(response)
    return response


def _page_text(status: int, title: str, message: str) -> tuple[str, str]:
    """Return a person's title and explanation of an error page, translated."""
    from flask_babel import gettext

    texts = {
        400: (
            gettext("Something was wrong with that request"),
            gettext("Go back, reload the page and try again."),
        ),
        403: (gettext("Not allowed"), gettext("You may not open this page.")),
        404: (gettext("Page not found"), gettext("There is nothing at this address.")),
        405: (
            gettext("Not allowed"),
            gettext("This address does not accept that kind of request."),
        ),
        413: (gettext("Too much data"), gettext("The request body is too large.")),
        500: (
            gettext("Something went wrong"),
            gettext("This is our fault. Please try again in a moment."),
        ),
        503: (
            gettext("Temporarily unavailable"),
            gettext("The service is temporarily unavailable. Please retry."),
        ),
    }
    return texts.get(status, (title, message))


def init_error_handlers(app: Flask) -> None:
    """Map HTTP errors, outages and bugs to clean answers (never a traceback)."""

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response | tuple[str, int]:
        status = error.code or 500
        description = error.description or error.name
        if status == 413:
            description = "The request body is too large."
        error_format = error_formats.current()
        if error_format != "page":
            code = {405: "invalid_request", 413: "invalid_request", 404: "not_found"}.get(
                status, "invalid_request"
            )
            response = _json_error(error_format, status, code, description)
            if status == 405 and error.get_response().headers.get("Allow"):
                response.headers["Allow"] = error.get_response().headers["Allow"]
            return response
        title, message = _page_text(status, error.name, description)
        return render_template(
            "errors/error.html", status=status, title=title, message=message
        ), status

    @app.errorhandler(DBAPIError)
    def _database_down(error: DBAPIError) -> Response | tuple[str, int]:
        # A database outage is not the caller's fault: 503 makes IFTTT retry later,
        # whereas a 401 would count toward disabling the user's Applets. Integrity
        # and data errors are bugs, not outages: they take the generic 500 path.
        if not (
            isinstance(error, OperationalError | InterfaceError) or error.connection_invalidated
        ):
            return _unexpected(error)
        db.session.rollback()
        log.error("database unavailable: %s", type(error).__name__)
        signals.database_unavailable.send()
        message = "The service is temporarily unavailable. Please retry."
        error_format = error_formats.current()
        if error_format != "page":
            response = _json_error(error_format, 503, "temporarily_unavailable", message)
            response.headers["Retry-After"] = "5"
            return response
        title, message = _page_text(503, "Unavailable", message)
        return render_template("errors/error.html", status=503, title=title, message=message), 503

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response | tuple[str, int]:
        if isinstance(error, HTTPException):
            return _http_error(error)
        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        error_format = error_formats.current()
        if error_format != "page":
            return _json_error(error_format, 500, "server_error", "Internal error.")
        title, message = _page_text(500, "Error", "Something went wrong.")
        return render_template("errors/error.html", status=500, title=title, message=message), 500
