"""Verify IFTTT access tokens in a Python shim by asking the authserver (RFC 7662).

The lower layer of the kit (``IftttService`` uses it); usable on its own too.

A shim (the service that answers IFTTT's trigger and action calls) receives
``Authorization: Bearer <token>`` on every request. This module checks such a token
against the authserver's introspection endpoint with the shim's resource-server
credentials (``authserver resource-servers create NAME``)::

    from flask import Flask, jsonify
    from authserver.shim import IntrospectionVerifier, ShimProtector, current_token

    verifier = IntrospectionVerifier(
        "https://auth.example.com/oauth/introspect",
        server_id="rs_...",
        secret="...",
        cache_seconds=30,
        timeout=3.0,
    )
    require_token = ShimProtector(verifier)
    app = Flask(__name__)

    @app.post("/ifttt/v1/triggers/new_thing")
    @require_token("ifttt")
    def new_thing():
        user_id = current_token["sub"]  # the id IFTTT's user info reported
        ...

What the decorator answers, in IFTTT's error format (``{"errors": [{"message": ...}]}``):

- 401 with ``WWW-Authenticate: Bearer error="invalid_token"`` when the token is
  missing, malformed, unknown, expired or revoked (IFTTT then refreshes and retries);
- 403 when the token lacks a required scope;
- 503 with ``Retry-After`` when the authserver cannot be reached, answers 5xx or 429,
  or refuses the shim's own credentials: none of these is the user's fault, and a 401
  would count toward IFTTT disabling the user's Applets.

Positive answers are cached in process memory for ``cache_seconds`` but never past
the token's ``exp``, so a revoked token stops working within ``cache_seconds``.
Negative answers are never cached: a token minted by ``/ifttt/v1/test/setup`` works
at once. The HTTP session reuses connections; it is safe to share the verifier
between threads.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import requests
from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.integrations.flask_oauth2 import current_token
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6750 import InsufficientScopeError
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc7662 import IntrospectTokenValidator
from flask import Response
from flask import abort
from flask import jsonify

__all__ = [
    "AuthServerUnavailableError",
    "IntrospectionVerifier",
    "ShimProtector",
    "current_token",
    "ifttt_error",
]

log = logging.getLogger(__name__)

# A token longer than this is not one of ours; refuse it without a network call.
MAX_TOKEN_LENGTH = 512


class AuthServerUnavailableError(OAuth2Error):  # type: ignore[misc]
    """The authserver could not answer; the shim should say 503 (IFTTT retries)."""

    error = "temporarily_unavailable"
    description = "The authorization server is unavailable."
    status_code = 503


class IntrospectionVerifier(IntrospectTokenValidator):  # type: ignore[misc]
    """Authlib token validator that introspects bearer tokens over HTTP, with a cache.

    :param introspection_url: the authserver's ``/oauth/introspect`` URL.
    :param server_id: the resource server id (``rs_...``).
    :param secret: the resource server secret.
    :param cache_seconds: how long a positive answer may be reused (0 disables).
    :param timeout: seconds for connecting and for reading each answer.
    :param max_entries: cache size bound; the oldest entries go first.
    :param session: a ``requests.Session`` to use (one is created otherwise).
    """

    def __init__(
        self,
        introspection_url: str,
        *,
        server_id: str,
        secret: str,
        cache_seconds: float = 30.0,
        timeout: float = 3.0,
        max_entries: int = 10_000,
        session: requests.Session | None = None,
        realm: str | None = None,
    ) -> None:
        super().__init__(realm=realm)
        if cache_seconds < 0 or timeout <= 0 or max_entries < 1:
            raise ValueError("cache_seconds >= 0, timeout > 0 and max_entries >= 1")
        self.introspection_url = introspection_url
        self.cache_seconds = float(cache_seconds)
        self.timeout = float(timeout)
        self.max_entries = max_entries
        self.session = session or requests.Session()
        self.session.auth = (server_id, secret)
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    # Public API ----------------------------------------------------------------------

    def verify(self, token_string: str) -> dict[str, Any] | None:
        """Return the claims of an active access token, or None for any other token.

        :raises AuthServerUnavailableError: when the authserver cannot answer.
        """
        claims = self.introspect_token(token_string)
        return claims if self._is_valid(claims) else None

    def clear_cache(self) -> None:
        """Forget every cached answer (for example after revoking tokens)."""
        with self._lock:
            self._cache.clear()

    # Authlib TokenValidator --------------------------------------------------------

    def introspect_token(self, token_string: str) -> dict[str, Any]:
        """Return the introspection answer, from the cache when still fresh.

        :raises AuthServerUnavailableError: on a network error, timeout, 5xx, 429,
            a refusal of our credentials, or an answer that is not JSON.
        """
        if not token_string or len(token_string) > MAX_TOKEN_LENGTH:
            return {"active": False}
        # The cache is keyed by a digest so raw tokens are not kept in memory longer
        # than the request that carried them.
        key = hashlib.sha256(token_string.encode("utf-8", "surrogatepass")).hexdigest()
        now = time.time()
        cached = self._cached(key, now)
        if cached is not None:
            return cached
        claims = self._post(token_string)
        if self._is_valid(claims):
            self._remember(key, claims, now)
        return claims

    def validate_token(self, token: dict[str, Any] | None, scopes: Any, request: Any) -> None:
        """Refuse anything but an active, unexpired bearer access token with the scopes.

        :raises InvalidTokenError: 401 for an inactive or unsuitable token.
        :raises InsufficientScopeError: 403 when a required scope is missing.
        """
        if not self._is_valid(token):
            raise InvalidTokenError(realm=self.realm, extra_attributes=self.extra_attributes)
        assert token is not None  # noqa: S101 - narrowed by _is_valid
        if self.scope_insufficient(token.get("scope"), scopes):
            raise InsufficientScopeError()

    # Internals ---------------------------------------------------------------------

    @staticmethod
    def _is_valid(claims: dict[str, Any] | None) -> bool:
        if not claims or claims.get("active") is not True:
            return False
        # RFC 7662 §2.2: a refresh token may be active too, but never authorizes calls.
        if str(claims.get("token_type", "")).lower() != "bearer":
            return False
        exp = claims.get("exp")
        return not (isinstance(exp, int | float) and time.time() >= exp)

    def _cached(self, key: str, now: float) -> dict[str, Any] | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            until, claims = entry
            if now >= until:
                del self._cache[key]
                return None
            return claims

    def _remember(self, key: str, claims: dict[str, Any], now: float) -> None:
        until = now + self.cache_seconds
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            until = min(until, float(exp))
        if until <= now:
            return
        with self._lock:
            self._cache[key] = (until, claims)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)

    def _post(self, token_string: str) -> dict[str, Any]:
        try:
            response = self.session.post(
                self.introspection_url,
                data={"token": token_string, "token_type_hint": "access_token"},
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            log.warning("introspection failed: %s", type(error).__name__)
            raise AuthServerUnavailableError() from None
        if response.status_code in (401, 403):
            # Our own credentials were refused: a configuration problem of the shim,
            # not the user's token, so IFTTT must not see a 401.
            log.error(
                "introspection refused the resource server credentials (%s)", response.status_code
            )
            raise AuthServerUnavailableError()
        if response.status_code != 200:
            log.warning("introspection answered %s", response.status_code)
            raise AuthServerUnavailableError()
        try:
            claims = response.json()
        except ValueError:
            log.warning("introspection answered with a body that is not JSON")
            raise AuthServerUnavailableError() from None
        if not isinstance(claims, dict) or not isinstance(claims.get("active"), bool):
            log.warning("introspection answered without an 'active' member")
            raise AuthServerUnavailableError()
        return claims


def ifttt_error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """Build a response in IFTTT's error format: {"errors": [{"message": ...}]}."""
    response = jsonify(errors=[{"message": message}])
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class ShimProtector(ResourceProtector):  # type: ignore[misc]
    """Authlib's Flask resource protector answering in IFTTT's error format.

    Use an instance as a decorator, ``@require_token("ifttt")`` (or ``@require_token()``
    for any scope); inside the view ``current_token`` holds the introspection claims.
    """

    def __init__(self, verifier: IntrospectionVerifier, realm: str = "ifttt-shim") -> None:
        super().__init__()
        verifier.realm = verifier.realm or realm
        self.verifier = verifier
        self.register_token_validator(verifier)

    def raise_error_response(self, error: OAuth2Error) -> None:
        """Abort with 401, 403 or 503 in IFTTT's shape (never a bare Authlib body)."""
        if isinstance(error, AuthServerUnavailableError):
            abort(
                ifttt_error(
                    "The service is temporarily unavailable. Please retry.",
                    503,
                    {"Retry-After": "5"},
                )
            )
        if isinstance(error, InsufficientScopeError):
            abort(ifttt_error("The access token does not allow this.", 403))
        # RFC 6750 §3.1: missing, malformed and invalid tokens all get the same
        # invalid_token challenge; IFTTT only acts on the 401 and the errors array.
        realm = self.verifier.realm or "ifttt-shim"
        abort(
            ifttt_error(
                "Invalid or expired access token.",
                401,
                {"WWW-Authenticate": f'Bearer realm="{realm}", error="invalid_token"'},
            )
        )
