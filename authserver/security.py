"""Secret and token generation, hashing, comparison and password hashing."""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any

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


# AES-256-GCM and HKDF-SHA256 for the sealed successors below, through the OpenSSL
# that hashlib already loaded. The `cryptography` package does the same, but its
# Rust extension keeps about 6 MiB resident in every worker that loads it, which
# alone put a PostgreSQL worker over its memory target (docs/performance.md). The
# EVP interface gives the same algorithm byte for byte (ciphertext || 16-byte tag,
# as cryptography's AESGCM). Where that library cannot be reached (a Python
# without _hashlib, an OpenSSL without these symbols) cryptography is used instead;
# tests/unit/test_aesgcm.py checks both against each other and the GCM spec's vectors.
_KEY_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16

# OpenSSL's evp.h: EVP_CTRL_GCM_GET_TAG / EVP_CTRL_GCM_SET_TAG (stable since 1.0.1).
_GET_TAG = 0x10
_SET_TAG = 0x11


def hkdf_sha256(key_material: bytes, info: bytes, length: int = 32) -> bytes:
    """Derive ``length`` bytes with HKDF-SHA256 and no salt (RFC 5869)."""
    if not 0 < length <= 255 * 32:
        raise ValueError("HKDF-SHA256 derives 1 to 8160 bytes")
    # RFC 5869 §2.2: no salt means HashLen zero bytes.
    prk = hmac.digest(bytes(32), key_material, hashlib.sha256)
    block = b""
    output = b""
    counter = 1
    while len(output) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), hashlib.sha256)
        output += block
        counter += 1
    return output[:length]


class _OpenSSLGCM:
    """The few EVP functions AES-256-GCM needs, with their C signatures."""

    def __init__(self, library: ctypes.CDLL) -> None:
        vp, cp, ip, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int

        def bind(name: str, restype: Any, *argtypes: Any) -> Any:
            function = getattr(library, name)
            function.restype = restype
            function.argtypes = list(argtypes)
            return function

        self.ctx_new = bind("EVP_CIPHER_CTX_new", vp)
        self.ctx_free = bind("EVP_CIPHER_CTX_free", None, vp)
        self.ctx_ctrl = bind("EVP_CIPHER_CTX_ctrl", i, vp, i, i, vp)
        self.cipher = bind("EVP_aes_256_gcm", vp)()
        self.encrypt_init = bind("EVP_EncryptInit_ex", i, vp, vp, vp, cp, cp)
        self.encrypt_update = bind("EVP_EncryptUpdate", i, vp, vp, ip, cp, i)
        self.encrypt_final = bind("EVP_EncryptFinal_ex", i, vp, vp, ip)
        self.decrypt_init = bind("EVP_DecryptInit_ex", i, vp, vp, vp, cp, cp)
        self.decrypt_update = bind("EVP_DecryptUpdate", i, vp, vp, ip, cp, i)
        self.decrypt_final = bind("EVP_DecryptFinal_ex", i, vp, vp, ip)
        if not self.cipher:
            raise OSError("EVP_aes_256_gcm returned NULL")

    def encrypt(self, key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
        ctx = self.ctx_new()
        if not ctx:
            raise MemoryError("EVP_CIPHER_CTX_new failed")
        try:
            out = ctypes.create_string_buffer(len(plaintext) + _TAG_BYTES)
            written = ctypes.c_int(0)
            tail = ctypes.c_int(0)
            if (
                self.encrypt_init(ctx, self.cipher, None, key, nonce) != 1
                or self.encrypt_update(ctx, out, written, plaintext, len(plaintext)) != 1
                or written.value != len(plaintext)
                or self.encrypt_final(ctx, None, tail) != 1
                or tail.value != 0
                or self.ctx_ctrl(ctx, _GET_TAG, _TAG_BYTES, ctypes.byref(out, len(plaintext))) != 1
            ):
                raise ValueError("AES-GCM encryption failed")
            return out.raw
        finally:
            self.ctx_free(ctx)

    def decrypt(self, key: bytes, nonce: bytes, data: bytes) -> bytes | None:
        size = len(data) - _TAG_BYTES
        ctx = self.ctx_new()
        if not ctx:
            raise MemoryError("EVP_CIPHER_CTX_new failed")
        try:
            tag = ctypes.create_string_buffer(data[size:], _TAG_BYTES)
            out = ctypes.create_string_buffer(max(size, 1))
            written = ctypes.c_int(0)
            tail = ctypes.c_int(0)
            if (
                self.decrypt_init(ctx, self.cipher, None, key, nonce) != 1
                or self.decrypt_update(ctx, out, written, data, size) != 1
                or self.ctx_ctrl(ctx, _SET_TAG, _TAG_BYTES, tag) != 1
            ):
                raise ValueError("AES-GCM decryption failed")
            # The tag is checked here: nothing decrypted is returned unless it matches.
            if self.decrypt_final(ctx, None, tail) != 1:
                return None
            return out.raw[:size]
        finally:
            self.ctx_free(ctx)


def _load_openssl() -> _OpenSSLGCM | None:
    try:
        import _hashlib

        # dlsym on the hashlib extension's handle also searches the libcrypto it
        # links, so these are the functions of the very OpenSSL hashlib uses.
        return _OpenSSLGCM(ctypes.CDLL(_hashlib.__file__))
    except (ImportError, OSError, AttributeError):
        return None


def _check_gcm_sizes(key: bytes, nonce: bytes) -> None:
    if len(key) != _KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise ValueError("AES-256-GCM takes a 32-byte key and a 12-byte nonce")


_openssl = _load_openssl()


def _encrypt_with_cryptography(key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key).encrypt(nonce, plaintext, None)


def _decrypt_with_cryptography(key: bytes, nonce: bytes, data: bytes) -> bytes | None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(nonce, data, None)
    except InvalidTag:
        return None


_encrypt: Callable[[bytes, bytes, bytes], bytes] = (
    _openssl.encrypt if _openssl else _encrypt_with_cryptography
)
_decrypt: Callable[[bytes, bytes, bytes], bytes | None] = (
    _openssl.decrypt if _openssl else _decrypt_with_cryptography
)


def aes_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    """Return AES-256-GCM's ciphertext followed by its 16-byte tag (no associated data).

    :raises ValueError: for a key that is not 32 bytes or a nonce that is not 12.
    """
    _check_gcm_sizes(key, nonce)
    return _encrypt(key, nonce, plaintext)


def aes_gcm_decrypt(key: bytes, nonce: bytes, data: bytes | memoryview) -> bytes | None:
    """Return the plaintext of ``ciphertext || tag``, or None when the tag does not match.

    :raises ValueError: for a key that is not 32 bytes or a nonce that is not 12.
    """
    _check_gcm_sizes(key, nonce)
    if len(data) < _TAG_BYTES:
        return None
    # A driver may hand a bytea over as a memoryview; ctypes takes bytes.
    return _decrypt(key, nonce, bytes(data))


def _successor_key(presented_token: str) -> bytes:
    return hkdf_sha256(presented_token.encode("utf-8"), info=b"authserver refresh successor v1")


def seal_successor(presented_token: str, payload: dict[str, Any]) -> bytes:
    """Encrypt a successor token response under a key only the old token yields.

    The database then never holds a usable token in plain text: decrypting needs
    the very refresh token the client presents again during the grace window.
    """
    nonce = secrets.token_bytes(NONCE_BYTES)
    plaintext = json.dumps(payload, separators=(",", ":")).encode()
    return nonce + aes_gcm_encrypt(_successor_key(presented_token), nonce, plaintext)


def open_successor(presented_token: str, sealed: bytes) -> dict[str, Any] | None:
    """Decrypt a sealed successor; return None when the key does not fit."""
    if len(sealed) < NONCE_BYTES:
        return None
    nonce, data = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    plaintext = aes_gcm_decrypt(_successor_key(presented_token), bytes(nonce), data)
    if plaintext is None:
        return None
    result = json.loads(plaintext)
    # Sealed by seal_successor from a dict; anything else is not ours.
    return result if isinstance(result, dict) else None
