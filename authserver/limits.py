"""Abuse limits on the `limits` library: failed logins and client auth, introspection.

Limits are keyed on what was proven, not on what was claimed. Only failed logins and
failed client authentications count, against the caller's address (and the username
or client id it claimed); nothing counts once a client has authenticated, so IFTTT's
bursts of refreshes, stale refresh tokens (invalid_grant) and user-info calls are
never throttled, and nobody can spend IFTTT's budget by claiming its public id.

Every limit is checked explicitly where it applies. Flask-Limiter's extension (built on
the same library) would add a before/after-request hook pair to every request, about
50 µs each time on the hot paths, for declarative limits we do not use.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from dataclasses import field

from flask import Flask
from flask import Response
from flask import current_app
from flask import jsonify
from flask import render_template
from flask import request
from flask_wtf import FlaskForm
from limits import RateLimitItem
from limits import parse
from limits.errors import StorageError
from limits.storage import MemoryStorage
from limits.storage import Storage
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from . import error_formats
from . import signals
from .credentials import presented_credentials
from .errors import ConfigError

log = logging.getLogger(__name__)

EXTENSION_KEY = "authserver.limiter"
LIMIT_KEYS = (
    "RATE_LIMIT_LOGIN_USER",
    "RATE_LIMIT_LOGIN_IP",
    "RATE_LIMIT_TOKEN_FAILURES",
    "RATE_LIMIT_CLIENT_AUTH_IP",
    "RATE_LIMIT_INTROSPECTION",
)


class InlineSweepMemoryStorage(MemoryStorage):
    """limits' in-memory storage, minus its timer thread.

    MemoryStorage starts a new threading.Timer 10 ms after each change to drop
    expired keys; under a steady introspection load that is about a hundred thread
    starts a second in every worker, which cost 9% of introspection throughput
    (measured with make bench). Expired fixed-window counters are already dropped
    when read (MemoryStorage.get); the rest are swept here, inline, at most once a
    second, so memory stays bounded without the thread.
    """

    SWEEP_INTERVAL = 1.0
    _next_sweep = 0.0

    def __init__(self) -> None:
        super().__init__()
        # MemoryStorage's constructor also starts a one-off sweep 10 ms later, on a
        # thread that would race the inline sweep (a KeyError when both expire the
        # same key): stop it, and wait for it in case it already began.
        self.timer.cancel()
        self.timer.join()

    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 - overrides a private hook
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_INTERVAL
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


class FailOpenStorage(Storage):
    """Redis, falling back to per-process counters while Redis cannot be reached.

    Redis only shares counters between workers and hosts; it is optional for
    correctness, so an outage must never answer IFTTT's calls with 500s. The Redis
    storage is built with the library's ``wrap_exceptions`` (every Redis error is a
    ``StorageError``); after one, the counters live in this process's memory, and
    Redis is tried again after ``RETRY_AFTER`` seconds, so a black-holed Redis costs
    one socket timeout per interval rather than one per request.
    """

    STORAGE_SCHEME = None
    RETRY_AFTER = 5.0
    WARN_EVERY = 60.0

    def __init__(self, primary: Storage) -> None:
        super().__init__()
        self.primary = primary
        self.fallback = InlineSweepMemoryStorage()
        self._retry_at = 0.0
        self._warned_at: float | None = None

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        """Nothing escapes: every Redis error is answered from process memory."""
        return ()

    def _storage(self) -> Storage:
        return self.primary if time.monotonic() >= self._retry_at else self.fallback

    def _failed(self, error: StorageError) -> None:
        now = time.monotonic()
        self._retry_at = now + self.RETRY_AFTER
        signals.limit_storage_failed.send()
        if self._warned_at is None or now - self._warned_at >= self.WARN_EVERY:
            self._warned_at = now
            log.warning(
                "Redis unreachable (%s): rate limits use per-process counters until it "
                "answers; this warning repeats at most once a minute",
                type(error.storage_error).__name__,
            )

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count in Redis, or in process memory while Redis is down."""
        storage = self._storage()
        if storage is self.primary:
            try:
                return self.primary.incr(key, expiry, amount)
            except StorageError as error:
                self._failed(error)
        return self.fallback.incr(key, expiry, amount)

    def get(self, key: str) -> int:
        """Read a counter from Redis, or from process memory while Redis is down."""
        storage = self._storage()
        if storage is self.primary:
            try:
                return self.primary.get(key)
            except StorageError as error:
                self._failed(error)
        return self.fallback.get(key)

    def get_expiry(self, key: str) -> float:
        """Read a window's end from Redis, or from process memory while Redis is down."""
        storage = self._storage()
        if storage is self.primary:
            try:
                return self.primary.get_expiry(key)
            except StorageError as error:
                self._failed(error)
        return self.fallback.get_expiry(key)

    def check(self) -> bool:
        """Tell whether Redis answers a ping (the library's own health check)."""
        return self.primary.check()

    def reset(self) -> int | None:
        """Clear the process's counters (Redis keeps its own until they expire)."""
        return self.fallback.reset()

    def clear(self, key: str) -> None:
        """Drop one counter wherever it lives."""
        self.fallback.clear(key)
        if self._storage() is self.primary:
            try:
                self.primary.clear(key)
            except StorageError as error:
                self._failed(error)


# Redis answers in well under a millisecond; a second without an answer means it is
# unreachable, and the request goes on with per-process counters.
REDIS_TIMEOUT_SECONDS = 1.0


def init_limits(app: Flask) -> None:
    """Create this app's limiter (memory, or Redis when configured).

    Nothing connects here: start-up works with Redis down.
    """
    items: dict[str, RateLimitItem] = {}
    for key in LIMIT_KEYS:
        items[key] = _parse_limit(key, app.config[key])
    app.config["RATELIMIT_ENABLED"] = str(app.config["RATE_LIMITS"]).lower() == "on"
    redis_url = str(app.config["REDIS_URL"] or "")
    storage: Storage
    if redis_url:
        # Shared by every worker and instance; the prefix keeps deployments apart.
        redis = storage_from_string(
            redis_url,
            key_prefix=str(app.config["REDIS_KEY_PREFIX"]),
            wrap_exceptions=True,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        if not isinstance(redis, Storage):  # an async storage, from an async:// URL
            raise ConfigError("AUTHSERVER_REDIS_URL must be a redis:// URL")
        storage = FailOpenStorage(redis)
    else:
        storage = InlineSweepMemoryStorage()
    app.extensions[EXTENSION_KEY] = _Limits(
        FixedWindowRateLimiter(storage),
        items,
        enabled=app.config["RATELIMIT_ENABLED"],
        per_process=type(storage) is InlineSweepMemoryStorage,
    )


@dataclass
class _Limits:
    """One app's limiter, read once per check instead of through several proxies."""

    limiter: FixedWindowRateLimiter
    items: dict[str, RateLimitItem]
    enabled: bool
    #: Counters in this process only (no Redis): see _client_auth_counters_expired.
    per_process: bool
    #: When (time.time()) every client-auth failure counter this process holds has
    #: expired; per-process counters only.
    client_auth_quiet_at: float = 0.0
    #: The introspection counter's key per caller: the same string every call, and
    #: building it (five conversions and a join) cost more than the count itself.
    introspection_keys: dict[str, str] = field(default_factory=dict)

    MAX_KEYS = 1024


def redis_status() -> str:
    """Return "ok", "unreachable" or "not configured" (for /readyz)."""
    storage = _state().limiter.storage
    if not isinstance(storage, FailOpenStorage):
        return "not configured"
    return "ok" if storage.check() else "unreachable"


def _parse_limit(key: str, value: object) -> RateLimitItem:
    try:
        item: RateLimitItem | None = parse(str(value))
    except ValueError:
        item = None
    # "0 per minute" parses, but would refuse everyone before a single failure.
    if item is None or item.amount < 1:
        raise ConfigError(f"AUTHSERVER_{key} must look like '10 per minute' (got {value!r})")
    return item


def _state() -> _Limits:
    value: _Limits = current_app.extensions[EXTENSION_KEY]
    return value


def _limiter() -> tuple[FixedWindowRateLimiter, dict[str, RateLimitItem]]:
    state = _state()
    return state.limiter, state.items


def get_remote_address() -> str:
    """Return the caller's address (after ProxyFix, when configured)."""
    return request.remote_addr or "127.0.0.1"


def enabled() -> bool:
    """Tell whether rate limits are on for this app."""
    return _state().enabled


def _exceeded(key: str, *identifiers: str) -> int | None:
    """Return seconds to wait if the limit is used up, else None."""
    if not enabled():
        return None
    limiter, items = _limiter()
    item = items[key]
    if limiter.test(item, *identifiers):
        return None
    reset, _remaining = limiter.get_window_stats(item, *identifiers)
    return max(1, math.ceil(reset - time.time()))


def _hit(key: str, *identifiers: str) -> None:
    if enabled():
        limiter, items = _limiter()
        limiter.hit(items[key], *identifiers)


def _login_key(username: str) -> str:
    # The lookup's own normalization (NFKC), then casefold: every spelling that logs
    # into an account, full-width or otherwise, shares that account's counter.
    from .services.users import normalize_username

    return normalize_username(username).casefold()[:150]


def login_limit_exceeded(username: str, address: str) -> int | None:
    """Return seconds to wait if this username or address failed too often."""
    return _exceeded("RATE_LIMIT_LOGIN_USER", "login-user", _login_key(username)) or _exceeded(
        "RATE_LIMIT_LOGIN_IP", "login-ip", address
    )


def record_login_failure(username: str, address: str) -> None:
    """Count a failed login against the username and the address."""
    _hit("RATE_LIMIT_LOGIN_USER", "login-user", _login_key(username))
    _hit("RATE_LIMIT_LOGIN_IP", "login-ip", address)


def _client_auth_counters_expired(state: _Limits) -> bool:
    """Tell whether this process's counters cannot hold a client-auth failure now.

    Checked before every introspection and token call, and failures are rare: with
    per-process counters, a worker that recorded no failure within the longest
    window has nothing to look up (two key builds and reads, ~8 % of introspection).
    Fixed windows end at most one window after their first hit, so past the last
    failure plus that window every counter is gone. Redis counters are shared with
    other workers, whose failures this process does not see: always read them.
    """
    return state.per_process and time.time() >= state.client_auth_quiet_at


def client_auth_exceeded(address: str, claimed_id: str | None) -> int | None:
    """Return seconds to wait if this address failed client authentication too often.

    Counted per address, and per address plus the client id it claimed: a client id
    is public (IFTTT's is in every authorize URL), so failures claiming it never
    count against the real client calling from elsewhere.
    """
    wait = _exceeded("RATE_LIMIT_CLIENT_AUTH_IP", "client-auth-ip", address)
    if wait is None and claimed_id is not None:
        wait = _exceeded("RATE_LIMIT_TOKEN_FAILURES", "client-auth", address, claimed_id)
    return wait


def record_client_auth_failure(address: str, claimed_id: str | None) -> None:
    """Count a failed client authentication against the address (and the claimed id)."""
    state = _state()
    if not state.enabled:
        return
    items = state.items
    window = max(
        items["RATE_LIMIT_CLIENT_AUTH_IP"].get_expiry(),
        items["RATE_LIMIT_TOKEN_FAILURES"].get_expiry(),
    )
    # Before the hits: a concurrent check that sees the new counters also sees this.
    # Never earlier than before (a clock set back must not end an earlier window).
    state.client_auth_quiet_at = max(state.client_auth_quiet_at, time.time() + window)
    _hit("RATE_LIMIT_CLIENT_AUTH_IP", "client-auth-ip", address)
    if claimed_id is not None:
        _hit("RATE_LIMIT_TOKEN_FAILURES", "client-auth", address, claimed_id)


def introspection_exceeded(caller_id: str) -> int | None:
    """Count one call of an authenticated caller; return seconds to wait when over."""
    state = _state()
    if not state.enabled:
        return None
    item = state.items["RATE_LIMIT_INTROSPECTION"]
    keys = state.introspection_keys
    key = keys.get(caller_id)
    if key is None:
        if len(keys) >= state.MAX_KEYS:
            keys.clear()
        key = keys[caller_id] = item.key_for("introspect", caller_id)
    # FixedWindowRateLimiter.hit, given the key it would have built.
    if state.limiter.storage.incr(key, item.get_expiry()) <= item.amount:
        return None
    reset, _remaining = state.limiter.get_window_stats(item, "introspect", caller_id)
    return max(1, math.ceil(reset - time.time()))


def refused_for_client_auth_failures() -> Response | None:
    """Answer 429 to an address that failed client authentication too often.

    Checked before any secret is, at every endpoint that authenticates a client or
    a resource server: a refused address learns nothing more.
    """
    state = _state()
    if not state.enabled or _client_auth_counters_expired(state):
        return None
    wait = client_auth_exceeded(get_remote_address(), presented_credentials().claimed_id)
    return too_many(wait) if wait else None


def too_many(retry_after: int, form: FlaskForm | None = None) -> Response:
    """Build a 429 in the format of the endpoint being called.

    Pages get the login form back (``form`` keeps what the user typed).
    """
    signals.rate_limited.send()
    error_format = error_formats.current()
    if error_format == "json":
        response = jsonify(
            error="slow_down" if request.endpoint == "oauth.token" else "temporarily_unavailable",
            error_description="Too many requests. Retry later.",
        )
        response.headers["Cache-Control"] = "no-store"
    elif error_format == "ifttt":
        response = jsonify(errors=[{"message": "Too many requests. Retry later."}])
    else:
        from flask_babel import gettext

        from .forms import LoginForm

        response = Response(
            render_template(
                "auth/login.html",
                form=form or LoginForm(),
                error=gettext("Too many attempts. Please wait a few minutes and try again."),
            ),
            mimetype="text/html",
        )
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response
