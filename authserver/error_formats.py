"""Which format an error takes: JSON (OAuth's), IFTTT's JSON or a page, owned by the route.

Each blueprint declares its format where it is created (``declare``); the app-wide
error handlers (``app_setup.init_error_handlers``) and the 429 (``limits.too_many``)
ask ``current()``. A request whose route matched is answered in the format of the
blueprint (or endpoint) that owns the route; only one that matched no route (404,
405) is placed by its path, under the prefixes the blueprints declared, as
Canaille's ``redirect_to_bp_handlers`` does.
"""

from __future__ import annotations

from typing import Literal

from flask import Blueprint
from flask import request

# "json": RFC 6749 §5.2's {"error", "error_description"}; "ifttt": {"errors": [...]}.
ErrorFormat = Literal["json", "ifttt", "page"]

# Blueprint name, or endpoint of an app-level route, -> format. Pages are the default.
_OWNERS: dict[str, ErrorFormat] = {}
# Endpoints answered as pages inside a machine blueprint (oauth.authorize).
_PAGE_ENDPOINTS: set[str] = set()
# For requests that matched no route: (path prefix, format), and exact page paths.
_PREFIXES: list[tuple[str, ErrorFormat]] = []
_PAGE_PATHS: set[str] = set()


def declare(
    owner: Blueprint | str,
    error_format: ErrorFormat,
    *,
    prefixes: tuple[str, ...] = (),
    page_endpoints: dict[str, str] | None = None,
) -> None:
    """Declare the error format of a blueprint (or app-level endpoint) and its paths.

    ``page_endpoints`` maps an endpoint of the blueprint answered as a page to its
    path, so that a 405 there is a page too.
    """
    name = owner if isinstance(owner, str) else owner.name
    _OWNERS[name] = error_format
    _PREFIXES.extend((prefix, error_format) for prefix in prefixes)
    for endpoint, path in (page_endpoints or {}).items():
        _PAGE_ENDPOINTS.add(endpoint)
        _PAGE_PATHS.add(path)


def current() -> ErrorFormat:
    """Return the error format of the current request's route."""
    endpoint = request.endpoint
    if endpoint is not None:
        if endpoint in _PAGE_ENDPOINTS:
            return "page"
        return _OWNERS.get(request.blueprint or endpoint, "page")
    path = request.path
    if path in _PAGE_PATHS:
        return "page"
    for prefix, error_format in _PREFIXES:
        if path.startswith(prefix):
            return error_format
    return "page"
