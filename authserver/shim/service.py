"""IFTTT's service protocol as a Flask blueprint: users write only domain functions.

::

    service = IftttService(
        authserver_url="https://auth.example.com",
        server_id="rs_...", server_secret="...",
        service_keys=["production key", "staging key"],
    )

    @service.trigger("new_thing", fields=["topic"])
    def new_thing(user, fields, limit):
        return [{"title": ..., "meta": {"id": ..., "timestamp": ...}}, ...]

    @service.action("create_thing", fields=["title"])
    def create_thing(user, fields):
        if not fields["title"].strip():
            raise Skip("An empty title creates nothing.")
        return thing.id

    @service.test_setup
    def samples():
        return {"triggers": {"new_thing": {"topic": "news"}}, ...}

    app.register_blueprint(service.blueprint)

The kit answers every protocol detail: the service key (constant time, several keys),
bearer tokens (introspection, cached), envelopes and status codes, ``limit``,
``meta`` and ordering of trigger events, trigger identities, and ``test/setup``'s
access token (from the authserver's ``POST /shim/test-token``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import TypeVar

import requests
from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from .realtime import RealtimeClient
from .store import MemoryStore
from .store import TriggerIdentity
from .store import TriggerIdentityStore
from .verifier import AuthServerUnavailableError
from .verifier import IntrospectionVerifier

__all__ = ["IftttService", "ShimDeveloperError", "ShimUser", "Skip"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_LIMIT = 50  # IFTTT's documented default when a poll names no limit.
JSON_UTF8 = "application/json; charset=utf-8"


class Skip(Exception):  # noqa: N818 - users raise it as a verb: raise Skip("why")
    """Raised by an action: IFTTT shows the run as skipped (400 with ``status: SKIP``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ShimDeveloperError(Exception):
    """A registered function broke the protocol (e.g. an event without ``meta.id``).

    The kit logs it and answers 500 with the message, which IFTTT's endpoint tests
    show to the developer.
    """


class _RequestError(Exception):
    """Answer IFTTT with this status and message (400, 401, 404, 500 or 503)."""

    def __init__(self, status: int, message: str, *, skip: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.skip = skip


@dataclass(frozen=True)
class ShimUser:
    """Whose request this is: ``sub`` is the id IFTTT's user info reported."""

    sub: str
    scopes: frozenset[str]
    claims: dict[str, Any]

    @property
    def id(self) -> str:
        """The same id as ``sub`` (what IFTTT calls the user id)."""
        return self.sub


@dataclass
class _Endpoint:
    slug: str
    function: Callable[..., Any]
    fields: tuple[str, ...]
    options: dict[str, Callable[..., Any]]
    validations: dict[str, Callable[..., Any]]


class IftttService:
    """One IFTTT service: its triggers, actions and queries, and the protocol around them.

    :param authserver_url: the authserver's base URL (introspection, test tokens, status).
    :param server_id: this shim's resource-server id (``rs_...``).
    :param server_secret: its secret.
    :param service_keys: IFTTT service keys accepted (production, staging, one being
        rotated); each compared in constant time.
    :param scope: the scope every bearer token must hold (None: any).
    :param store: where trigger identities are kept (default: in memory).
    :param realtime_url: IFTTT's Realtime API base (default ``$IFTTT_REALTIME_URL`` or
        ``https://realtime.ifttt.com``).
    :param cache_seconds: how long a positive introspection answer is reused.
    :param timeout: seconds for each call to the authserver.
    :param name: the blueprint's name (several services may share an app).
    """

    def __init__(
        self,
        *,
        authserver_url: str,
        server_id: str,
        server_secret: str,
        service_keys: Sequence[str],
        scope: str | None = "ifttt",
        store: TriggerIdentityStore | None = None,
        realtime_url: str | None = None,
        cache_seconds: float = 30.0,
        timeout: float = 3.0,
        name: str = "ifttt_service",
    ) -> None:
        keys = [key for key in service_keys if key]
        if not keys or len(keys) != len(list(service_keys)):
            raise ValueError("service_keys needs at least one key, and no empty one")
        self.authserver_url = authserver_url.rstrip("/")
        self.server_id = server_id
        self._server_secret = server_secret
        self._key_digests = [_digest(key) for key in keys]
        self.scope = scope
        self.store: TriggerIdentityStore = store if store is not None else MemoryStore()
        self.timeout = float(timeout)
        self.verifier = IntrospectionVerifier(
            self.authserver_url + "/oauth/introspect",
            server_id=server_id,
            secret=server_secret,
            cache_seconds=cache_seconds,
            timeout=timeout,
        )
        self.realtime = RealtimeClient(
            service_key=keys[0],
            base_url=realtime_url
            or os.environ.get("IFTTT_REALTIME_URL")
            or "https://realtime.ifttt.com",
        )
        self.name = name
        self.triggers: dict[str, _Endpoint] = {}
        self.actions: dict[str, _Endpoint] = {}
        self.queries: dict[str, _Endpoint] = {}
        self._samples: Callable[[ShimUser], dict[str, Any]] | None = None
        self._on_identity_deleted: Callable[..., Any] | None = None
        self._blueprint: Blueprint | None = None

    # Registration ------------------------------------------------------------------

    def trigger(self, slug: str, *, fields: Iterable[str] = ()) -> Callable[[F], F]:
        """Register ``function(user, fields, limit) -> events`` for a trigger.

        Each event is a dict with ``meta: {"id", "timestamp"}`` (``timestamp`` in Unix
        seconds or an aware datetime). ``fields`` names the trigger fields a poll must
        carry (400 otherwise).
        """
        return self._register(self.triggers, slug, fields)

    def action(self, slug: str, *, fields: Iterable[str] = ()) -> Callable[[F], F]:
        """Register ``function(user, fields) -> id`` for an action.

        Return an id, a list of ids, or dicts with ``id`` (and ``url``). Raise
        ``Skip("why")`` when there is nothing to do.
        """
        return self._register(self.actions, slug, fields)

    def query(self, slug: str, *, fields: Iterable[str] = ()) -> Callable[[F], F]:
        """Register ``function(user, fields, limit, cursor) -> items or (items, cursor)``."""
        return self._register(self.queries, slug, fields)

    def trigger_field_options(self, slug: str, field: str) -> Callable[[F], F]:
        """Register ``function(user) -> options`` (strings or ``{"label", "value"}``)."""
        return self._field_hook(self.triggers, slug, field, "options")

    def trigger_field_validation(self, slug: str, field: str) -> Callable[[F], F]:
        """Register ``function(user, value) -> True, False, or a message (invalid)``."""
        return self._field_hook(self.triggers, slug, field, "validations")

    def action_field_options(self, slug: str, field: str) -> Callable[[F], F]:
        """Register ``function(user) -> options`` for an action field."""
        return self._field_hook(self.actions, slug, field, "options")

    def action_field_validation(self, slug: str, field: str) -> Callable[[F], F]:
        """Register ``function(user, value) -> True, False, or a message`` for an action."""
        return self._field_hook(self.actions, slug, field, "validations")

    def test_setup(self, function: F) -> F:
        """Register ``function(user) -> samples``; the kit adds the ``accessToken``.

        ``user`` is the test user the token belongs to (only ``sub`` is known).
        """
        self._samples = function
        return function

    def trigger_identity_deleted(self, function: F) -> F:
        """Register ``function(identity: TriggerIdentity)``, called when IFTTT forgets one."""
        self._on_identity_deleted = function
        return function

    # Realtime ----------------------------------------------------------------------

    def notify(
        self, *, user_ids: Iterable[str] = (), trigger_identities: Iterable[str] = ()
    ) -> int:
        """Tell IFTTT's Realtime API to poll now; return the number of calls made.

        :raises RealtimeError: when IFTTT refused or stayed unreachable after retries.
        """
        return self.realtime.notify(user_ids=user_ids, trigger_identities=trigger_identities)

    def notify_async(
        self, *, user_ids: Iterable[str] = (), trigger_identities: Iterable[str] = ()
    ) -> bool:
        """Queue a notification for a background thread; False when the queue is full."""
        return self.realtime.notify_async(user_ids=user_ids, trigger_identities=trigger_identities)

    # Flask -------------------------------------------------------------------------

    @property
    def blueprint(self) -> Blueprint:
        """The blueprint answering ``/ifttt/v1/...`` (built once)."""
        if self._blueprint is None:
            self._blueprint = self._build_blueprint()
        return self._blueprint

    def init_app(self, app: Any) -> None:
        """Register the blueprint on a Flask app."""
        app.register_blueprint(self.blueprint)

    def _build_blueprint(self) -> Blueprint:
        bp = Blueprint(self.name, __name__, url_prefix="/ifttt/v1")
        bp.add_url_rule("/status", "status", self._status, methods=["GET"])
        bp.add_url_rule("/test/setup", "test_setup", self._test_setup, methods=["POST"])
        bp.add_url_rule("/triggers/<slug>", "trigger", self._trigger, methods=["POST"])
        bp.add_url_rule(
            "/triggers/<slug>/trigger_identity/<identity>",
            "delete_trigger_identity",
            self._delete_identity,
            methods=["DELETE"],
        )
        bp.add_url_rule("/actions/<slug>", "action", self._action, methods=["POST"])
        bp.add_url_rule("/queries/<slug>", "query", self._query, methods=["POST"])
        for kind in ("triggers", "actions"):
            bp.add_url_rule(
                f"/{kind}/<slug>/fields/<field>/options",
                f"{kind}_field_options",
                self._field_options,
                methods=["POST"],
                defaults={"kind": kind},
            )
            bp.add_url_rule(
                f"/{kind}/<slug>/fields/<field>/validate",
                f"{kind}_field_validation",
                self._field_validation,
                methods=["POST"],
                defaults={"kind": kind},
            )
        # IFTTT knows only 200/400/401/404/500/503: anything else under the prefix,
        # whatever the method, is a 404 in IFTTT's shape rather than Flask's 405 page.
        bp.add_url_rule(
            "/<path:rest>",
            "unknown",
            self._unknown,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        )
        bp.add_url_rule(
            "/", "root", self._unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
        )
        return bp

    # Views -------------------------------------------------------------------------

    def _status(self) -> Response:
        return self._answer(self._do_status)

    def _do_status(self) -> Response:
        self._require_service_key()
        try:
            answer = self.verifier.session.get(
                self.authserver_url + "/healthz", timeout=self.timeout
            )
        except requests.RequestException as error:
            log.warning("authserver unreachable: %s", type(error).__name__)
            raise _RequestError(503, "The authorization server is unreachable.") from None
        if answer.status_code != 200:
            log.warning("authserver health answered %s", answer.status_code)
            raise _RequestError(503, "The authorization server is unavailable.")
        return Response(status=200)

    def _test_setup(self) -> Response:
        return self._answer(self._do_test_setup)

    def _do_test_setup(self) -> Any:
        self._require_service_key()
        if self._samples is None:
            raise ShimDeveloperError("no @service.test_setup function returns the samples")
        token, sub = self._mint_test_token()
        # The function learns the test user, so it can make sure that user has
        # the three events IFTTT's tests expect of every trigger.
        samples = self._samples(ShimUser(sub, frozenset(), {"sub": sub}))
        if not isinstance(samples, dict):
            raise ShimDeveloperError("the @service.test_setup function must return a dict")
        return {"accessToken": token, "samples": samples}

    def _mint_test_token(self) -> tuple[str, str]:
        try:
            answer = requests.post(
                self.authserver_url + "/shim/test-token",
                auth=(self.server_id, self._server_secret),
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            log.warning("test token: authserver unreachable: %s", type(error).__name__)
            raise _RequestError(503, "The authorization server is unreachable.") from None
        if answer.status_code in (401, 403):
            raise ShimDeveloperError(
                "the authserver refused a test token (run `authserver resource-servers "
                f"allow-test-tokens {self.server_id} --user ... --client ...`): "
                f"{answer.status_code}"
            )
        try:
            body = answer.json() if answer.status_code == 200 else {}
            token, sub = body["access_token"], body["sub"]
        except (ValueError, KeyError, TypeError):
            token = sub = None
        if not (isinstance(token, str) and token and isinstance(sub, str) and sub):
            log.warning("test token: authserver answered %s", answer.status_code)
            raise _RequestError(503, "No test token is available right now.")
        return token, sub

    def _trigger(self, slug: str) -> Response:
        return self._answer(lambda: self._do_trigger(slug))

    def _do_trigger(self, slug: str) -> Any:
        endpoint = self._endpoint(self.triggers, slug, "trigger")
        user = self._require_user()
        body = _body()
        fields = _fields(body, "triggerFields", endpoint.fields)
        limit = _limit(body)
        identity = body.get("trigger_identity")
        if isinstance(identity, str) and identity:
            self.store.remember(
                TriggerIdentity(identity, slug, user.sub, fields, datetime.now(UTC))
            )
        if limit == 0:
            return []
        events = endpoint.function(user, fields, limit)
        return _ordered_events(slug, events)[:limit]

    def _action(self, slug: str) -> Response:
        return self._answer(lambda: self._do_action(slug))

    def _do_action(self, slug: str) -> Any:
        endpoint = self._endpoint(self.actions, slug, "action")
        user = self._require_user()
        fields = _fields(_body(), "actionFields", endpoint.fields)
        try:
            result = endpoint.function(user, fields)
        except Skip as skip:
            raise _RequestError(400, skip.message or "Skipped.", skip=True) from None
        return _action_records(slug, result)

    def _query(self, slug: str) -> Response:
        return self._answer(lambda: self._do_query(slug))

    def _do_query(self, slug: str) -> Any:
        endpoint = self._endpoint(self.queries, slug, "query")
        user = self._require_user()
        body = _body()
        fields = _fields(body, "queryFields", endpoint.fields)
        limit = _limit(body)
        cursor = body.get("cursor")
        result = endpoint.function(user, fields, limit, cursor if isinstance(cursor, str) else None)
        items, next_cursor = result if isinstance(result, tuple) else (result, None)
        if not isinstance(items, list):
            raise ShimDeveloperError(f"query {slug!r} must return a list (or (list, cursor))")
        extra = {"cursor": next_cursor} if next_cursor else {}
        return _Envelope(items[:limit], extra)

    def _field_options(self, kind: str, slug: str, field: str) -> Response:
        return self._answer(lambda: self._do_field_options(kind, slug, field))

    def _do_field_options(self, kind: str, slug: str, field: str) -> Any:
        hook = self._field_function(kind, slug, field, "options")
        user = self._require_user()
        options = []
        for option in hook(user):
            if isinstance(option, str):
                options.append({"label": option, "value": option})
            elif (
                isinstance(option, dict)
                and "label" in option
                and ("value" in option or "values" in option)
            ):
                options.append(option)
            else:
                raise ShimDeveloperError(
                    f"options for {kind[:-1]} {slug!r} field {field!r} must be strings or "
                    'dicts with "label" and "value"'
                )
        return options

    def _field_validation(self, kind: str, slug: str, field: str) -> Response:
        return self._answer(lambda: self._do_field_validation(kind, slug, field))

    def _do_field_validation(self, kind: str, slug: str, field: str) -> Any:
        hook = self._field_function(kind, slug, field, "validations")
        user = self._require_user()
        body = _body()
        if "value" not in body:
            raise _RequestError(400, "The request has no value to validate.")
        verdict = hook(user, body["value"])
        if verdict is True or verdict is None:
            return {"valid": True}
        message = verdict if isinstance(verdict, str) and verdict else "This value is not valid."
        return {"valid": False, "message": message}

    def _delete_identity(self, slug: str, identity: str) -> Response:
        return self._answer(lambda: self._do_delete_identity(slug, identity))

    def _do_delete_identity(self, slug: str, identity: str) -> Any:
        user = self._require_user()
        known = self.store.get(identity)
        if known is not None and known.user_id != user.sub:
            # Another user's identity: nothing of this caller's to forget.
            return {}
        forgotten = self.store.forget(identity) if known is not None else None
        if self._on_identity_deleted is not None:
            self._on_identity_deleted(forgotten or TriggerIdentity(identity, slug, user.sub))
        return {}

    def _unknown(self, rest: str = "") -> Response:
        return self._answer(lambda: _raise(_RequestError(404, "Not found.")))

    # Protocol helpers --------------------------------------------------------------

    def _answer(self, work: Callable[[], Any]) -> Response:
        """Run a view's work; wrap its result or error in IFTTT's envelope."""
        try:
            result = work()
        except _RequestError as error:
            return _error(error.status, error.message, skip=error.skip)
        except ShimDeveloperError as error:
            log.error("shim developer error on %s: %s", request.path, error)
            return _error(500, f"Shim error: {error}")
        except Exception:
            log.exception("shim function failed on %s", request.path)
            return _error(500, "The service failed to handle this request.")
        if isinstance(result, Response):
            return result
        envelope = result if isinstance(result, _Envelope) else _Envelope(result, {})
        response = jsonify(data=envelope.data, **envelope.extra)
        response.headers["Content-Type"] = JSON_UTF8
        return response

    def _require_service_key(self) -> None:
        presented = (
            request.headers.get("IFTTT-Service-Key")
            or request.headers.get("IFTTT-Channel-Key")
            or ""
        )
        digest = _digest(presented)
        # Compare against every key, without stopping at the first match, so the time
        # taken says nothing about which key (or how much of one) matched.
        matched = False
        for key in self._key_digests:
            matched |= hmac.compare_digest(digest, key)
        if not presented or not matched:
            log.warning("request with an invalid IFTTT service key on %s", request.path)
            raise _RequestError(401, "Invalid service key.")

    def _require_user(self) -> ShimUser:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _RequestError(401, "Invalid or expired access token.")
        try:
            claims = self.verifier.verify(token)
        except AuthServerUnavailableError:
            raise _RequestError(
                503, "The service is temporarily unavailable. Please retry."
            ) from None
        if claims is None or not isinstance(claims.get("sub"), str):
            raise _RequestError(401, "Invalid or expired access token.")
        scopes = frozenset(str(claims.get("scope") or "").split())
        if self.scope is not None and self.scope not in scopes:
            # IFTTT knows no 403: a token without the scope is as good as invalid,
            # and the 401 makes IFTTT ask the user to reconnect.
            raise _RequestError(401, "The access token does not allow this.")
        return ShimUser(claims["sub"], scopes, claims)

    def _endpoint(self, table: dict[str, _Endpoint], slug: str, kind: str) -> _Endpoint:
        endpoint = table.get(slug)
        if endpoint is None:
            raise _RequestError(404, f"Unknown {kind} {slug!r}.")
        return endpoint

    def _field_function(self, kind: str, slug: str, field: str, hook: str) -> Callable[..., Any]:
        table = self.triggers if kind == "triggers" else self.actions
        endpoint = self._endpoint(table, slug, kind[:-1])
        function = getattr(endpoint, hook).get(field)
        if function is None:
            raise _RequestError(404, f"Unknown field {field!r}.")
        return function  # type: ignore[no-any-return]

    def _register(
        self, table: dict[str, _Endpoint], slug: str, fields: Iterable[str]
    ) -> Callable[[F], F]:
        def decorate(function: F) -> F:
            existing = table.get(slug)
            if existing is not None and existing.function is not _unset:
                raise ValueError(f"{slug!r} is registered twice")
            endpoint = existing or _Endpoint(slug, function, (), {}, {})
            endpoint.function = function
            endpoint.fields = tuple(fields)
            table[slug] = endpoint
            return function

        return decorate

    def _field_hook(
        self, table: dict[str, _Endpoint], slug: str, field: str, hook: str
    ) -> Callable[[F], F]:
        def decorate(function: F) -> F:
            endpoint = table.setdefault(slug, _Endpoint(slug, _unset, (), {}, {}))
            getattr(endpoint, hook)[field] = function
            return function

        return decorate


# Module helpers -------------------------------------------------------------------


@dataclass
class _Envelope:
    data: Any
    extra: dict[str, Any]


def _unset(*args: Any) -> Any:
    """Answer 404 for a slug whose field hooks came without its function."""
    raise _RequestError(404, "Not found.")


def _raise(error: Exception) -> Any:
    raise error


def _digest(value: str) -> bytes:
    # Equal-length digests, so compare_digest's time is independent of the key length.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _error(status: int, message: str, *, skip: bool = False) -> Response:
    entry = {"status": "SKIP", "message": message} if skip else {"message": message}
    response = jsonify(errors=[entry])
    response.status_code = status
    response.headers["Content-Type"] = JSON_UTF8
    response.headers["Cache-Control"] = "no-store"
    if status == 503:
        # IFTTT retries a 503 later; say when.
        response.headers["Retry-After"] = "5"
    if status == 401:
        # RFC 6750 §3.1; IFTTT itself looks only at the status and the errors array.
        response.headers["WWW-Authenticate"] = 'Bearer realm="ifttt-shim", error="invalid_token"'
    return response


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None and request.get_data():
        raise _RequestError(400, "The request body is not JSON.")
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _RequestError(400, "The request body must be a JSON object.")
    return body


def _fields(body: dict[str, Any], key: str, required: Sequence[str]) -> dict[str, Any]:
    fields = body.get(key)
    if fields is None and not required:
        return {}
    if not isinstance(fields, dict):
        raise _RequestError(400, f"{key} is missing.")
    missing = [name for name in required if name not in fields]
    if missing:
        raise _RequestError(400, f"{key} lacks {', '.join(missing)}.")
    return fields


def _limit(body: dict[str, Any]) -> int:
    limit = body.get("limit", DEFAULT_LIMIT)
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise _RequestError(400, "limit must be a whole number, 0 or more.")
    return limit


def _timestamp(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int(value.timestamp()) if value.tzinfo is not None else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _ordered_events(slug: str, events: Any) -> list[dict[str, Any]]:
    """Check every event's meta and order them newest first (stable for equal times)."""
    if not isinstance(events, list | tuple):
        raise ShimDeveloperError(f"trigger {slug!r} must return a list of events")
    checked = []
    for number, event in enumerate(events, 1):
        meta = event.get("meta") if isinstance(event, dict) else None
        where = f"trigger {slug!r} event #{number}"
        if not isinstance(meta, dict):
            raise ShimDeveloperError(
                f'{where} has no "meta": return {{"meta": {{"id": ..., "timestamp": ...}}}}'
            )
        event_id = meta.get("id")
        if isinstance(event_id, int) and not isinstance(event_id, bool):
            event_id = str(event_id)
        if not isinstance(event_id, str) or not event_id:
            raise ShimDeveloperError(f"{where} has no meta.id (a unique, stable string per event)")
        timestamp = _timestamp(meta.get("timestamp"))
        if timestamp is None:
            raise ShimDeveloperError(
                f"{where} has no meta.timestamp (Unix seconds, or an aware datetime)"
            )
        checked.append({**event, "meta": {**meta, "id": event_id, "timestamp": timestamp}})
    checked.sort(key=lambda event: event["meta"]["timestamp"], reverse=True)
    return checked


def _action_records(slug: str, result: Any) -> list[dict[str, Any]]:
    """Turn what an action returned into IFTTT's ``[{"id": ..., "url"?: ...}]``."""
    items = result if isinstance(result, list | tuple) else [result]
    records = []
    for item in items:
        record = dict(item) if isinstance(item, dict) else {"id": item}
        if isinstance(record.get("id"), int) and not isinstance(record.get("id"), bool):
            record["id"] = str(record["id"])
        if not isinstance(record.get("id"), str) or not record["id"]:
            raise ShimDeveloperError(
                f"action {slug!r} must return the created id(s) (a string or int, or dicts "
                'with "id")'
            )
        records.append(record)
    if not records:
        raise ShimDeveloperError(f"action {slug!r} returned no id; raise Skip(...) instead")
    return records
