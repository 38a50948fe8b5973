import base64
import hashlib
import re

from authserver import security
from authserver.security import SUCCESSOR_SEED_BYTES
from authserver.security import digests_equal
from authserver.security import hash_password
from authserver.security import hash_token
from authserver.security import new_successor_seed
from authserver.security import new_token
from authserver.security import recall_successor_pair
from authserver.security import successor_pair
from authserver.security import verify_password
from tests.factories import seal_v1_successor


def argon2_cost(encoded):
    return encoded.split("$")[1:4]


def test_new_token_is_256_bit_url_safe_and_unique():
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
        assert len(base64.urlsafe_b64decode(token + "=")) == 32


def test_hash_token_is_sha256_hex_and_deterministic():
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()
    assert hash_token("abc") == hash_token("abc")
    assert hash_token("abc") != hash_token("abd")


def test_hash_token_accepts_lone_surrogates():
    assert re.fullmatch(r"[0-9a-f]{64}", hash_token("x\udcff"))


def test_digests_equal_compares_exactly():
    assert digests_equal("a" * 64, "a" * 64)
    assert not digests_equal("a" * 64, "a" * 63 + "b")
    assert not digests_equal("a", "aa")


def test_password_hash_is_argon2id_salted_and_verifiable():
    first = hash_password("s3cret pass")
    second = hash_password("s3cret pass")
    assert first.startswith("$argon2id$")
    assert first != second  # salted
    assert "s3cret" not in first
    assert verify_password(first, "s3cret pass")
    assert not verify_password(first, "s3cret pasS")


def test_verify_password_handles_non_ascii_and_surrogates():
    encoded = hash_password("pässwörd ✓")
    assert verify_password(encoded, "pässwörd ✓")
    assert not verify_password(encoded, "passwort")
    assert not verify_password(encoded, "p\udcffss")


def test_verify_password_rejects_garbage_hash_without_raising():
    assert not verify_password("not-a-hash", "anything")
    assert not verify_password("$argon2id$v=19$m=1,t=1,p=1$broken", "anything")


def test_verify_password_without_hash_burns_one_real_verification(verify_calls):
    real = hash_password("whatever")
    assert verify_password(None, "whatever") is False
    assert verify_password(real, "wrong") is False
    assert len(verify_calls) == 2
    dummy, checked = verify_calls
    assert dummy == security._DUMMY_HASH
    assert checked == real
    # Same algorithm, version and cost: an unknown user costs what a known one does.
    assert argon2_cost(dummy) == argon2_cost(real)


def test_verify_password_without_hash_is_false_even_for_any_password(verify_calls):
    for attempt in ("", "password", security._DUMMY_HASH):
        assert verify_password(None, attempt) is False
    assert len(verify_calls) == 3


def test_successor_pair_comes_back_only_from_the_same_token_and_seed():
    seed = new_successor_seed()
    assert len(seed) == SUCCESSOR_SEED_BYTES
    access, refresh = successor_pair("old-refresh-token", seed)
    assert access != refresh
    assert recall_successor_pair("old-refresh-token", seed) == (access, refresh)
    assert set(successor_pair("another-token", seed)).isdisjoint({access, refresh})
    assert set(successor_pair("old-refresh-token", new_successor_seed())).isdisjoint(
        {access, refresh}
    )


def test_successor_tokens_have_the_shape_of_new_tokens():
    shape = re.compile(r"[A-Za-z0-9_-]{43}")
    for token in (*successor_pair("t", new_successor_seed()), new_token()):
        assert shape.fullmatch(token), token


def test_v1_ciphertext_opens_only_with_the_presented_token():
    payload = {"access_token": "at", "refresh_token": "rt", "expires_at": None, "scope": "ifttt"}
    sealed = seal_v1_successor("old-refresh-token", payload)
    assert recall_successor_pair("old-refresh-token", sealed) == ("at", "rt")
    assert recall_successor_pair("another-token", sealed) is None
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    assert recall_successor_pair("old-refresh-token", tampered) is None
    assert recall_successor_pair("old-refresh-token", b"short") is None
    not_a_pair = seal_v1_successor("old-refresh-token", {"access_token": "at"})
    assert recall_successor_pair("old-refresh-token", not_a_pair) is None


def test_dummy_hash_uses_the_hashers_current_parameters():
    # An unknown username is verified against the dummy hash: with other argon2
    # parameters it would take a different time and reveal that the user is unknown.
    assert security._DUMMY_HASH.startswith("$argon2id$")
    assert not security._password_hasher.check_needs_rehash(security._DUMMY_HASH)


def test_importing_security_computes_no_argon2_hash(tmp_path):
    # Each argon2 hash takes 64 MiB; at import time every worker would pay it.
    import subprocess
    import sys

    probe = (
        "import argon2\n"
        "calls = []\n"
        "original = argon2.PasswordHasher.hash\n"
        "argon2.PasswordHasher.hash = (\n"
        "    lambda self, *a, **k: calls.append(1) or original(self, *a, **k)\n"
        ")\n"
        "import authserver.security\n"
        "print(len(calls))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "0"
