"""AES-256-GCM through hashlib's OpenSSL: the standard's vectors, and cryptography's bytes."""

import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authserver import security

# The GCM specification's AES-256 test cases 13-15 (no associated data).
VECTORS = [
    (
        "00" * 32,
        "00" * 12,
        "",
        "",
        "530f8afbc74536b9a963b4f1c4cb738b",
    ),
    (
        "00" * 32,
        "00" * 12,
        "00" * 16,
        "cea7403d4d606b6e074ec5d3baf39d18",
        "d0d1c8a799996bf0265b98b5d48ab919",
    ),
    (
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
        "b094dac5d93471bdec1a502270e3cc6c",
    ),
]


def test_openssl_is_used_where_hashlib_has_it():
    # Otherwise every worker would load cryptography's 6 MiB extension again.
    assert security._openssl is not None


@pytest.mark.parametrize(("key", "nonce", "plaintext", "ciphertext", "tag"), VECTORS)
def test_gcm_spec_vectors(key, nonce, plaintext, ciphertext, tag):
    key, nonce, plaintext = bytes.fromhex(key), bytes.fromhex(nonce), bytes.fromhex(plaintext)
    sealed = security.aes_gcm_encrypt(key, nonce, plaintext)
    assert sealed.hex() == ciphertext + tag
    assert security.aes_gcm_decrypt(key, nonce, sealed) == plaintext


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 255, 4096])
def test_same_bytes_as_cryptography_both_ways(size):
    key, nonce, plaintext = os.urandom(32), os.urandom(12), os.urandom(size)
    ours = security.aes_gcm_encrypt(key, nonce, plaintext)
    assert ours == AESGCM(key).encrypt(nonce, plaintext, None)
    assert AESGCM(key).decrypt(nonce, ours, None) == plaintext
    assert (
        security.aes_gcm_decrypt(key, nonce, AESGCM(key).encrypt(nonce, plaintext, None))
        == plaintext
    )
    # The fall-back, for a Python whose hashlib has no OpenSSL.
    assert security._encrypt_with_cryptography(key, nonce, plaintext) == ours
    assert security._decrypt_with_cryptography(key, nonce, ours) == plaintext


@pytest.mark.parametrize("decrypt", [security.aes_gcm_decrypt, security._decrypt_with_cryptography])
def test_any_changed_bit_is_refused(decrypt):
    key, nonce = os.urandom(32), os.urandom(12)
    sealed = security.aes_gcm_encrypt(key, nonce, b"successor token response")
    for position in (0, len(sealed) // 2, len(sealed) - 16, len(sealed) - 1):
        changed = bytearray(sealed)
        changed[position] ^= 1
        assert decrypt(key, nonce, bytes(changed)) is None
    assert decrypt(key, bytes(12), sealed) is None
    assert decrypt(bytes(32), nonce, sealed) is None
    assert decrypt(key, nonce, sealed[:-1]) is None


def test_too_short_to_hold_a_tag_is_refused():
    key, nonce = os.urandom(32), os.urandom(12)
    assert security.aes_gcm_decrypt(key, nonce, b"") is None
    assert security.aes_gcm_decrypt(key, nonce, bytes(15)) is None
    assert (
        security.aes_gcm_decrypt(key, nonce, memoryview(security.aes_gcm_encrypt(key, nonce, b"x")))
        == b"x"
    )


@pytest.mark.parametrize(("key", "nonce"), [(bytes(16), bytes(12)), (bytes(32), bytes(8))])
def test_other_key_or_nonce_sizes_raise(key, nonce):
    with pytest.raises(ValueError, match="32-byte key and a 12-byte nonce"):
        security.aes_gcm_encrypt(key, nonce, b"x")
    with pytest.raises(ValueError, match="32-byte key and a 12-byte nonce"):
        security.aes_gcm_decrypt(key, nonce, bytes(32))


def test_hkdf_rfc5869_case_3():
    # SHA-256, no salt, no info, 42 bytes.
    okm = security.hkdf_sha256(bytes([0x0B] * 22), b"", 42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


@pytest.mark.parametrize("length", [1, 32, 33, 100])
def test_hkdf_same_bytes_as_cryptography(length):
    material, info = os.urandom(43), b"authserver refresh successor v1"
    expected = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(material)
    assert security.hkdf_sha256(material, info, length) == expected
