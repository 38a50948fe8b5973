"""Secret and token generation, hashing, comparison and password hashing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError

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


# A successor seed is exactly this long; anything else in the column is a v1 ciphertext.
SUCCESSOR_SEED_BYTES = 32


def new_successor_seed() -> bytes:
    """Return the random seed a rotation stores to answer its grace-window replays."""
    return secrets.token_bytes(SUCCESSOR_SEED_BYTES)


def successor_pair(presented_token: str, seed: bytes) -> tuple[str, str]:
    """Return the (access, refresh) pair a rotation issues, derived from its seed.

    A rotation within a grace window derives its successor pair with HMAC-SHA256
    keyed by the refresh token it rotates, over a random seed it stores. The
    database then holds no usable token: the seed alone yields nothing, and only the
    very token the client presents again can turn it back into the pair. The seed is
    erased when the successor is first used or the window ends, as the AES-GCM
    ciphertext that did this job before (v1) was.
    """
    key = presented_token.encode("utf-8", "surrogatepass")
    return _derived(key, b"access", seed), _derived(key, b"refresh", seed)


def recall_successor_pair(presented_token: str, stored: bytes) -> tuple[str, str] | None:
    """Return the pair a rotation issued, from the seed (or v1 ciphertext) it stored.

    Returns None when ``stored`` is a v1 ciphertext the token does not open.
    """
    if len(stored) == SUCCESSOR_SEED_BYTES:
        return successor_pair(presented_token, stored)
    return _open_v1_successor(presented_token, stored)


def _derived(key: bytes, label: bytes, seed: bytes) -> str:
    """Return a token of new_token()'s shape, derived from the key, label and seed."""
    digest = hmac.new(key, b"authserver successor v2\x00" + label + b"\x00" + seed, "sha256")
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def _open_v1_successor(presented_token: str, sealed: bytes) -> tuple[str, str] | None:
    """Decrypt a successor sealed before v2 (AES-GCM, key HKDF of the presented token).

    Rows rotated by an earlier release keep their ciphertext until the successor's
    first use (the google profile has no time limit), so reading it stays supported.
    ``cryptography`` is imported only here: a worker that never meets a v1 row never
    loads its 6 MiB.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"authserver refresh successor v1",
    ).derive(presented_token.encode("utf-8"))
    try:
        plaintext = AESGCM(key).decrypt(sealed[:12], sealed[12:], None)
    except (InvalidTag, ValueError):
        return None
    payload = json.loads(plaintext)
    if not isinstance(payload, dict):
        return None
    access, refresh = payload.get("access_token"), payload.get("refresh_token")
    return (access, refresh) if isinstance(access, str) and isinstance(refresh, str) else None
