"""Grace-window replays from the stored seed, without `cryptography` in the worker.

A rotation stores a random seed; the successor pair is derived from it and the
presented token (HMAC-SHA256), so replaying needs no cipher. Rows rotated by an
earlier release hold an AES-GCM ciphertext instead, and still replay.
"""

import sys

import pytest
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update

from authserver.database import db
from authserver.models import AccessToken
from authserver.models import RefreshToken
from authserver.models import TokenFamily
from authserver.security import SUCCESSOR_SEED_BYTES
from authserver.security import hash_token
from tests.factories import make_tokens
from tests.factories import seal_v1_successor


@pytest.fixture
def rotated(user, oauth_client, client_secret, refresh):
    """The first refresh token and the body of its rotation."""
    r0 = make_tokens(user, oauth_client)["refresh_token"]
    body = refresh(r0, oauth_client.client_id, client_secret).get_json()
    return r0, body


def parent_of(refresh_token):
    return select(RefreshToken).where(RefreshToken.token_hash == hash_token(refresh_token))


def store(refresh_token, value):
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == hash_token(refresh_token))
        .values(successor_ciphertext=value)
    )
    db.session.commit()


def test_rotation_and_replay_never_load_cryptography(
    monkeypatch, user, oauth_client, client_secret, refresh
):
    # A None entry makes any import of the package fail, even of a submodule
    # another test imported already.
    for name in [m for m in sys.modules if m.split(".")[0] == "cryptography"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    r0 = make_tokens(user, oauth_client)["refresh_token"]
    first = refresh(r0, oauth_client.client_id, client_secret)
    assert first.status_code == 200
    again = refresh(r0, oauth_client.client_id, client_secret)
    assert again.status_code == 200
    assert again.get_json()["refresh_token"] == first.get_json()["refresh_token"]
    assert again.get_json()["access_token"] == first.get_json()["access_token"]


def test_only_the_seed_is_stored(rotated):
    r0, body = rotated
    stored = db.session.scalars(parent_of(r0)).one().successor_ciphertext
    assert stored is not None
    assert len(stored) == SUCCESSOR_SEED_BYTES
    assert body["refresh_token"].encode() not in stored
    assert body["access_token"].encode() not in stored


def test_a_successor_sealed_by_an_earlier_release_still_replays(
    oauth_client, client_secret, refresh, rotated
):
    r0, body = rotated
    store(
        r0,
        seal_v1_successor(
            r0,
            {
                "access_token": body["access_token"],
                "refresh_token": body["refresh_token"],
                "expires_at": None,
                "scope": body["scope"],
            },
        ),
    )
    replay = refresh(r0, oauth_client.client_id, client_secret)
    assert replay.status_code == 200
    assert replay.get_json()["refresh_token"] == body["refresh_token"]
    assert replay.get_json()["access_token"] == body["access_token"]


def test_a_v1_ciphertext_the_token_does_not_open_is_refused_without_revoking(
    oauth_client, client_secret, refresh, rotated
):
    r0, body = rotated
    store(r0, seal_v1_successor("another-token", {"access_token": "a", "refresh_token": "r"}))
    replay = refresh(r0, oauth_client.client_id, client_secret)
    assert replay.status_code == 400
    assert replay.get_json()["error"] == "invalid_grant"
    assert db.session.scalars(select(TokenFamily.revoked_at)).all() == [None]
    # The successor itself is untouched.
    assert refresh(body["refresh_token"], oauth_client.client_id, client_secret).status_code == 200


def test_replay_whose_access_token_row_is_gone_gets_a_fresh_one(
    http, oauth_client, client_secret, refresh, rotated
):
    r0, body = rotated
    db.session.execute(
        delete(AccessToken).where(AccessToken.token_hash == hash_token(body["access_token"]))
    )
    db.session.commit()
    replay = refresh(r0, oauth_client.client_id, client_secret)
    assert replay.status_code == 200
    assert replay.get_json()["refresh_token"] == body["refresh_token"]
    fresh = replay.get_json()["access_token"]
    assert fresh != body["access_token"]
    info = http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {fresh}"})
    assert info.status_code == 200
