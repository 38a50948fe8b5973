"""Arrange state through the services, as the application itself would."""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

from authserver.models import OAuth2Client
from authserver.models import User
from authserver.services import clients as client_service
from authserver.services import tokens as token_service
from authserver.services import users as user_service

IFTTT_REDIRECT = "https://ifttt.com/channels/acme/authorize"
STAGING_REDIRECT = "https://ifttt.com/channels/acme_staging/authorize"
PASSWORD = "correct horse battery staple"

_counter = itertools.count(1)


def make_user(**overrides: Any) -> User:
    n = next(_counter)
    fields = {"username": f"user{n}", "name": f"User {n}", "password": PASSWORD}
    fields.update(overrides)
    username = fields.pop("username")
    disabled = fields.pop("disabled", False)
    user = user_service.create_user(username, **fields)
    if disabled:
        user_service.set_disabled(username, disabled=True)
    return user


def make_oauth_client(**overrides: Any) -> tuple[OAuth2Client, str | None]:
    n = next(_counter)
    fields: dict[str, Any] = {
        "name": f"IFTTT {n}",
        "redirect_uris": [IFTTT_REDIRECT, STAGING_REDIRECT],
    }
    fields.update(overrides)
    name = fields.pop("name")
    return client_service.register_client(name, **fields)


def make_confidential_client(**overrides: Any) -> tuple[OAuth2Client, str]:
    oauth_client, secret = make_oauth_client(**overrides)
    assert secret is not None, "a confidential client has a secret"
    return oauth_client, secret


def make_tokens(user: User, oauth_client: OAuth2Client) -> dict[str, Any]:
    return token_service.issue_tokens_for(user, oauth_client, scope=None)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(client_id: str, **params: str) -> str:
    query = {
        "client_id": client_id,
        "response_type": "code",
        "scope": "ifttt",
        "state": "st-" + secrets.token_hex(4),
        "redirect_uri": IFTTT_REDIRECT,
    }
    query.update(params)
    return "/oauth/authorize?" + urlencode({k: v for k, v in query.items() if v is not None})


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def basic_auth(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def seal_v1_successor(presented_token: str, payload: dict[str, Any]) -> bytes:
    """Seal a successor as releases before the v2 seed did (AES-GCM, HKDF key).

    Rows rotated by such a release keep this ciphertext until their window ends,
    and the server must still replay from it.
    """
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"authserver refresh successor v1"
    ).derive(presented_token.encode())
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, json.dumps(payload).encode(), None)
