"""The client credentials a request presents, parsed once per request.

The limiter, the client-authentication methods, introspection and the request log
all read the same answer, so they cannot disagree about who the caller claims to be.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

from flask import request

# Client and resource-server ids never exceed this; a longer claim is treated as
# garbage (never a limiter key or a log field).
MAX_ID_LENGTH = 64
_ENVIRON_KEY = "authserver.presented_credentials"


@dataclass(frozen=True)
class PresentedCredentials:
    """What the caller presented: by HTTP Basic, else in the form body.

    Nothing here is proven: ``client_id`` is a claim until a secret matched it.
    """

    client_id: str | None = None
    secret: str | None = None
    # "client_secret_basic", "client_secret_post", or None when nothing was presented.
    method: str | None = None
    # A Basic header that cannot be decoded (RFC 6749 §2.3.1); answered with 401.
    malformed_basic: bool = False
    # With Basic, the body's own client_id and client_secret (RFC 6749 §2.3: one
    # method per request, so a body that contradicts the header is refused).
    body_client_id: str | None = None
    body_secret: str | None = None

    @property
    def claimed_id(self) -> str | None:
        """Return the claimed id when it could be a real one (for limits and logs)."""
        claimed = self.client_id
        if claimed is None or len(claimed) > MAX_ID_LENGTH or not _printable(claimed):
            return None
        return claimed


def presented_credentials() -> PresentedCredentials:
    """Return this request's presented client credentials (parsed on first use)."""
    # Kept in the WSGI environ rather than on ``g``: an app context (and its ``g``)
    # pushed by a caller outlives its requests, an environ belongs to one request.
    environ = request.environ
    found: PresentedCredentials | None = environ.get(_ENVIRON_KEY)
    if found is None:
        found = _parse()
        environ[_ENVIRON_KEY] = found
    return found


def _parse() -> PresentedCredentials:
    form = request.form
    body_id, body_secret = form.get("client_id"), form.get("client_secret")
    header = request.headers.get("Authorization") or ""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() == "basic":
        basic = _decode_basic(encoded.strip())
        if basic is None:
            return PresentedCredentials(malformed_basic=True)
        client_id, secret = basic
        return PresentedCredentials(
            client_id,
            secret,
            "client_secret_basic",
            body_client_id=body_id,
            body_secret=body_secret,
        )
    if body_id is None:
        return PresentedCredentials()
    return PresentedCredentials(
        body_id, body_secret, "client_secret_post" if body_secret is not None else None
    )


def _decode_basic(encoded: str) -> tuple[str, str] | None:
    # Authlib's own parser crashes on an empty token or bytes that are not UTF-8;
    # anything malformed is refused here instead.
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    client_id, colon, secret = decoded.partition(":")
    # RFC 6749 §2.3.1: both parts are application/x-www-form-urlencoded first.
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if not colon or not client_id or not secret or not _printable(client_id + secret):
        return None
    return client_id, secret


# C0 controls and DEL. One regex scan: a per-character generator cost about 5 % of an
# introspection call (it runs on every id and secret presented).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(text: str) -> bool:
    return _CONTROL.search(text) is None
