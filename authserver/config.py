"""Settings: documented defaults, overridden by AUTHSERVER_* variables, then validated."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigError
from .files import make_private_folder

ENV_PREFIX = "AUTHSERVER_"

# Each key is read from AUTHSERVER_<KEY>; its default's type decides how it is parsed.
DEFAULTS: dict[str, Any] = {
    # SQLAlchemy URL; empty means a SQLite file in the instance folder.
    "DATABASE_URL": "",
    # Flask session signing key; empty means generate once and keep in the instance folder.
    "SECRET_KEY": "",
    # Public base URL of this server; https required except on loopback hosts.
    "ISSUER": "http://127.0.0.1:8000",
    # Seconds an authorization code stays redeemable (RFC 6749 §4.1.2 recommends ≤ 600).
    "AUTH_CODE_TTL": 600,
    # Seconds an access token lives; 0 means access tokens never expire.
    "ACCESS_TOKEN_TTL": 3600,
    # Issue a new refresh token at each refresh (RFC 9700 §4.14.2).
    "REFRESH_ROTATION": True,
    # Seconds a rotated refresh token may be replayed for the same successor.
    "REFRESH_GRACE_SECONDS": 120,
    # How many replays of a rotated refresh token are honoured within the window
    # (0: no cap). Past the cap a replay is refused, but the grant is never revoked.
    "REFRESH_MAX_REPLAYS": 0,
    # Revoke the whole token family when a used refresh token is presented again.
    "REFRESH_REUSE_REVOKES_FAMILY": True,
    # Space-separated scopes announced in the RFC 8414 metadata.
    "SCOPES_SUPPORTED": "ifttt",
    # Profile URL for IFTTT's user info; "{id}" and "{username}" are substituted.
    "USER_URL_TEMPLATE": "",
    # "on" or "off"; off disables every rate limit (load tests, automated suites).
    "RATE_LIMITS": "on",
    # Redis URL for shared rate-limit counters; empty keeps them in process memory.
    "REDIS_URL": "",
    # Prefix of every Redis key; give each deployment sharing one Redis its own.
    "REDIS_KEY_PREFIX": "authserver",
    # Failed logins allowed per username, and per client address.
    "RATE_LIMIT_LOGIN_USER": "10 per 5 minutes",
    "RATE_LIMIT_LOGIN_IP": "50 per 5 minutes",
    # Failed client authentications (token, revocation, introspection) allowed per
    # address and claimed client id, and per address whatever the id. Nothing counts
    # once a client has authenticated (invalid_grant is IFTTT's normal traffic).
    "RATE_LIMIT_TOKEN_FAILURES": "60 per minute",
    "RATE_LIMIT_CLIENT_AUTH_IP": "120 per minute",
    # Introspection calls allowed per resource server (shims call it on every poll;
    # 100k users with a few Applets each mean hundreds a second, bursts far more).
    "RATE_LIMIT_INTROSPECTION": "300000 per minute",
    # "json" (one object per line) or "text" for local development.
    "LOG_FORMAT": "json",
    # Bearer token that unlocks /metrics; empty hides /metrics (404).
    "METRICS_TOKEN": "",
    # Seconds to wait for the database before answering 503.
    "DB_TIMEOUT_SECONDS": 5,
    # PostgreSQL: test a pooled connection before use when it sat idle this many
    # seconds (0: before every use, one extra round trip per request), so a request
    # after a quiet spell never meets a connection a restart or failover killed.
    "DB_PING_AFTER_IDLE_SECONDS": 1,
    # Seconds a worker may keep an authenticated client's or resource server's secret
    # lookup in memory (0: look it up on every call). Any change to credentials ends
    # every cached entry at once (see services/clients.py); this only bounds memory.
    "CREDENTIAL_CACHE_SECONDS": 60,
    # Number of reverse proxies in front of the app whose X-Forwarded-* to trust.
    "PROXY_HOPS": 0,
    # Name of the service users sign in to, on every page and in the tab title.
    "SERVICE_NAME": "authserver",
    # Logo shown above every page: an https URL or a /path; empty means
    # instance/static/logo.svg (or .png, .webp, .jpg) when present, else the name.
    "LOGO_URL": "",
    # Accent colour (#rgb or #rrggbb) of the primary buttons; the text on them is
    # black or white, whichever contrasts more (WCAG 2.1 AA either way).
    "ACCENT_COLOR": "#1a56db",
    # Plain-language description per scope for the consent and connected-apps
    # pages, as JSON: {"scope": "text"} or {"scope": {"en": "text", "de": "Text"}}.
    "SCOPE_DESCRIPTIONS": "",
    # Shortest password `users create` and `users set-password` accept.
    "MIN_PASSWORD_LENGTH": 12,
    # Largest request body accepted, in bytes.
    "MAX_CONTENT_LENGTH": 65536,
}

_LOOPBACK_NAMES = {"localhost"}
# Shorter keys can be brute-forced offline from one signed session cookie.
MIN_SECRET_KEY_LENGTH = 32
# Ten years; longer lifetimes overflow datetime arithmetic (a 500 on every token).
MAX_LIFETIME_SECONDS = 10 * 365 * 86400
_DB_SCHEMES = {"sqlite", "postgresql", "postgresql+psycopg"}
URL_TEMPLATE_FIELDS = frozenset({"id", "username"})


def load_config(instance_path: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge defaults, AUTHSERVER_* environment variables and explicit overrides.

    :raises ConfigError: when an environment value cannot be parsed.
    """
    settings = dict(DEFAULTS)
    for key, default in DEFAULTS.items():
        raw = os.environ.get(ENV_PREFIX + key)
        if raw is not None:
            settings[key] = _parse(key, raw, default)
    if overrides:
        settings.update(overrides)
    if not settings["DATABASE_URL"]:
        settings["DATABASE_URL"] = "sqlite:///" + str(Path(instance_path) / "authserver.db")
    if not settings["SECRET_KEY"]:
        settings["SECRET_KEY"] = _instance_secret_key(Path(instance_path))
    return settings


def _parse(key: str, raw: str, default: Any) -> Any:
    name = ENV_PREFIX + key
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, not {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    return raw


def _instance_secret_key(instance: Path) -> str:
    """Return the instance's session key, generating it on first start.

    :raises ConfigError: when the key file cannot be read or written.
    """
    # Generated once and kept beside the database, so sessions survive restarts and
    # every worker of one instance signs with the same key.
    path = instance / "secret_key"
    try:
        try:
            return _read_key(path)
        except FileNotFoundError:
            pass
        make_private_folder(instance)
        # Write a complete private temp file, then link it into place: link fails if
        # another process won the race, and no reader ever sees a half-written key.
        key = secrets.token_hex(32)
        temp = instance / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(key)
            try:
                os.link(temp, path)
            except FileExistsError:
                return _read_key(path)
        finally:
            temp.unlink(missing_ok=True)
        return key
    except OSError as error:
        raise ConfigError(
            f"cannot keep the secret key in {path} ({error.strerror or error}); "
            f"set {ENV_PREFIX}INSTANCE_PATH to a writable folder "
            f"or set {ENV_PREFIX}SECRET_KEY"
        ) from None


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(f"{path} holds no usable secret key; delete it to generate a new one")
    return key


def is_loopback_host(host: str | None) -> bool:
    """Tell whether a host name is this machine (plain http is tolerated there)."""
    if not host:
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_plain_url_template(template: str) -> bool:
    # Only bare {id} and {username}: "{username.__class__}" or "{id:>9}" would reach
    # into the objects or pad the value instead of substituting it.
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return False
    return all(
        name is None or (name in URL_TEMPLATE_FIELDS and not spec and conversion is None)
        for _, name, spec, conversion in fields
    )


def validate_config(settings: Mapping[str, Any]) -> None:
    """Refuse invalid or unsafe settings, naming the variable at fault.

    :raises ConfigError: on the first problem found.
    """
    issuer = str(settings["ISSUER"])
    parts = urlsplit(issuer)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"AUTHSERVER_ISSUER must be an absolute URL, not {issuer!r}")
    if parts.scheme != "https" and not is_loopback_host(parts.hostname):
        raise ConfigError(f"AUTHSERVER_ISSUER must use https outside local hosts (got {issuer!r})")
    if parts.query or parts.fragment:
        raise ConfigError("AUTHSERVER_ISSUER must not have a query or fragment")

    url = str(settings["DATABASE_URL"])
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in _DB_SCHEMES:
        raise ConfigError(
            "AUTHSERVER_DATABASE_URL must start with sqlite://, postgresql:// or "
            f"postgresql+psycopg:// (got scheme {scheme or url!r})"
        )
    try:
        make_url(url)
    except (ArgumentError, ValueError):
        # Not the URL itself in the message: it may hold a password.
        raise ConfigError(
            "AUTHSERVER_DATABASE_URL is not a valid URL (is the port a number?)"
        ) from None

    for key in (
        "AUTH_CODE_TTL",
        "ACCESS_TOKEN_TTL",
        "REFRESH_GRACE_SECONDS",
        "REFRESH_MAX_REPLAYS",
        "DB_TIMEOUT_SECONDS",
        "DB_PING_AFTER_IDLE_SECONDS",
        "CREDENTIAL_CACHE_SECONDS",
        "PROXY_HOPS",
        "MAX_CONTENT_LENGTH",
        "MIN_PASSWORD_LENGTH",
    ):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{ENV_PREFIX}{key} must be a whole number")
        if value < 0:
            raise ConfigError(f"{ENV_PREFIX}{key} must not be negative (got {value})")
    if settings["DB_TIMEOUT_SECONDS"] > 3600:
        # PostgreSQL's statement_timeout (milliseconds) is a 32-bit integer.
        raise ConfigError(f"{ENV_PREFIX}DB_TIMEOUT_SECONDS must be at most 3600 seconds")
    for key in ("AUTH_CODE_TTL", "ACCESS_TOKEN_TTL", "REFRESH_GRACE_SECONDS"):
        if settings[key] > MAX_LIFETIME_SECONDS:
            raise ConfigError(
                f"{ENV_PREFIX}{key} must be at most {MAX_LIFETIME_SECONDS} seconds "
                f"(got {settings[key]})"
            )
    if len(str(settings["SECRET_KEY"])) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(
            f"{ENV_PREFIX}SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} "
            "characters (leave it unset to generate one)"
        )
    if not 1 <= settings["MIN_PASSWORD_LENGTH"] <= 1024:
        raise ConfigError(f"{ENV_PREFIX}MIN_PASSWORD_LENGTH must be between 1 and 1024")
    if settings["AUTH_CODE_TTL"] == 0:
        raise ConfigError(f"{ENV_PREFIX}AUTH_CODE_TTL must be at least 1 second")
    if settings["DB_TIMEOUT_SECONDS"] == 0:
        raise ConfigError(f"{ENV_PREFIX}DB_TIMEOUT_SECONDS must be at least 1 second")
    access_ttl = settings["ACCESS_TOKEN_TTL"]
    grace = settings["REFRESH_GRACE_SECONDS"]
    if access_ttl and grace > access_ttl:
        # The replayed successor carries the same access token; a window longer than
        # its lifetime would hand out an access token that is already expired.
        raise ConfigError(
            f"{ENV_PREFIX}REFRESH_GRACE_SECONDS ({grace}) must not exceed "
            f"{ENV_PREFIX}ACCESS_TOKEN_TTL ({access_ttl})"
        )
    if str(settings["RATE_LIMITS"]).lower() not in {"on", "off"}:
        raise ConfigError(f"{ENV_PREFIX}RATE_LIMITS must be 'on' or 'off'")
    if str(settings["LOG_FORMAT"]) not in {"json", "text"}:
        raise ConfigError(f"{ENV_PREFIX}LOG_FORMAT must be 'json' or 'text'")
    template = str(settings["USER_URL_TEMPLATE"])
    if template and not _is_plain_url_template(template):
        raise ConfigError(
            f"{ENV_PREFIX}USER_URL_TEMPLATE may only use {{id}} and {{username}}, "
            "without conversions, format specs, attributes or indexes"
        )
    _validate_branding(settings)
    redis_url = str(settings["REDIS_URL"])
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{ENV_PREFIX}REDIS_URL must be a redis:// URL")


_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")


def _validate_branding(settings: Mapping[str, Any]) -> None:
    name = str(settings["SERVICE_NAME"]).strip()
    if not name or len(name) > 100:
        raise ConfigError(f"{ENV_PREFIX}SERVICE_NAME must be 1 to 100 characters")
    if not _HEX_COLOR.fullmatch(str(settings["ACCENT_COLOR"])):
        raise ConfigError(
            f"{ENV_PREFIX}ACCENT_COLOR must be a hex colour like #1a56db "
            f"(got {settings['ACCENT_COLOR']!r})"
        )
    logo = str(settings["LOGO_URL"])
    if logo and not logo.startswith("/"):
        parts = urlsplit(logo)
        local = parts.scheme == "http" and is_loopback_host(parts.hostname)
        if not parts.hostname or (parts.scheme != "https" and not local):
            raise ConfigError(
                f"{ENV_PREFIX}LOGO_URL must be an https:// URL or a path starting with / "
                f"(got {logo!r})"
            )
    elif logo.startswith("//"):
        raise ConfigError(f"{ENV_PREFIX}LOGO_URL must not start with // (say https://)")
    parse_scope_descriptions(settings["SCOPE_DESCRIPTIONS"])


def parse_scope_descriptions(raw: Any) -> dict[str, dict[str, str]]:
    """Parse SCOPE_DESCRIPTIONS into {scope: {language: text}} ("" = any language).

    :raises ConfigError: naming the setting, for anything but the documented shape.
    """
    if not raw:
        return {}
    name = f"{ENV_PREFIX}SCOPE_DESCRIPTIONS"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a JSON object (not valid JSON)") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{name} must be a JSON object of scope -> description")
    parsed: dict[str, dict[str, str]] = {}
    for scope, value in raw.items():
        texts = {"": value} if isinstance(value, str) else value
        if not isinstance(texts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in texts.items()
        ):
            raise ConfigError(
                f"{name}: the description of {scope!r} must be a text or an object of "
                'language -> text, like {"en": "...", "de": "..."}'
            )
        parsed[str(scope)] = {k.lower(): v.strip() for k, v in texts.items()}
    return parsed
