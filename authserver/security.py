"""Secret and token generation, hashing, comparison and password hashing."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# 32 random bytes = 256 bits, the entropy the issues ask of codes, tokens and secrets.
TOKEN_BYTES = 32

_password_hasher = PasswordHasher()
# Verifying against this hash when a username is unknown makes "no such user" take
# as long as "wrong password", so timing does not reveal which usernames exist.
# It is the hash of a random password nobody kept, made with the hasher's own
# parameters (tests/unit/test_security.py checks they still match). Computing it at
# import instead would make every worker allocate argon2's 64 MiB at start.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$vKnx6wpiVg0ueuBSEChqvg$"
    "CJ7vs+S/KNAxAncIwO7HLcry0xNc86LfjCBLy+fnWL4"
)


def new_token() -> str:
    """Return a fresh 256-bit random, URL-safe token."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(value: str) -> str:
    """Return the SHA-256 hex digest under which a token or secret is stored.

    Random 256-bit values need no slow hash: brute force is already out of reach,
    and the hot paths (token, introspection) cannot afford argon2 on every call.
    """
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def digests_equal(left: str, right: str) -> bool:
    """Compare two digests or secrets in constant time."""
    return hmac.compare_digest(left.encode(), right.encode())


def hash_password(password: str) -> str:
    """Hash a password with argon2id."""
    return _password_hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no hash, burn the same time and return False."""
    # Bytes, so a lone surrogate cannot raise inside argon2 (a 500 instead of False).
    secret = password.encode("utf-8", "surrogatepass")
    try:
        return _password_hasher.verify(password_hash or _DUMMY_HASH, secret) and (
            password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def _successor_key(presented_token: str) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"authserver refresh successor v1",
    )
    return hkdf.derive(presented_token.encode("utf-8"))


def seal_successor(presented_token: str, payload: dict[str, Any]) -> bytes:
    """Encrypt a successor token response under a key only the old token yields.

    The database then never holds a usable token in plain text: decrypting needs
    the very refresh token the client presents again during the grace window.
    """
    nonce = secrets.token_bytes(12)
    plaintext = json.dumps(payload, separators=(",", ":")).encode()
    return nonce + AESGCM(_successor_key(presented_token)).encrypt(nonce, plaintext, None)


def open_successor(presented_token: str, sealed: bytes) -> dict[str, Any] | None:
    """Decrypt a sealed successor; return None when the key does not fit."""
    from cryptography.exceptions import InvalidTag

    try:
        plaintext = AESGCM(_successor_key(presented_token)).decrypt(sealed[:12], sealed[12:], None)
    except (InvalidTag, ValueError):
        return None
    result = json.loads(plaintext)
    # Sealed by seal_successor from a dict; anything else is not ours.
    return result if isinstance(result, dict) else None
