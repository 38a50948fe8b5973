"""The credential cache: callers skip the secret lookup, yet no change is ever missed.

Each test first authenticates once (which fills the cache), then changes the
credentials the way an admin would (service call, or plain SQL behind the app's
back), and checks the very next request already sees the change.
"""

from datetime import UTC
from datetime import datetime
from datetime import timedelta
from types import SimpleNamespace

import pytest
from freezegun import freeze_time
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError

from authserver.database import db
from authserver.models import OAuth2Client
from authserver.models import ResourceServer
from authserver.services import clients as client_service
from tests.factories import basic_auth
from tests.factories import make_tokens

FROZEN = "2030-01-01T00:00:00+00:00"
CACHED_TABLES = ("credential_secrets", "oauth2_clients", "resource_servers")


@pytest.fixture
def shim(app):
    server, secret = client_service.register_resource_server("Shim")
    return server.server_id, secret


@pytest.fixture
def access_token(user, oauth_client):
    return make_tokens(user, oauth_client)["access_token"]


def introspect(http, caller_id, secret, token):
    return http.post(
        "/oauth/introspect", data={"token": token}, headers=basic_auth(caller_id, secret)
    )


def refresh(http, oauth_client, secret, refresh_token):
    return http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": oauth_client.client_id,
            "client_secret": secret,
        },
    )


@pytest.fixture
def statements(app):
    """Record the SQL of every statement the app runs from now on."""
    seen = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def secret_lookups(statements):
    return [s for s in statements if "credential_secrets.secret_hash" in s]


def test_second_introspection_skips_the_secret_lookup(http, shim, access_token, statements):
    assert introspect(http, shim[0], shim[1], access_token).get_json()["active"] is True
    assert len(secret_lookups(statements)) == 1
    assert introspect(http, shim[0], shim[1], access_token).get_json()["active"] is True
    assert len(secret_lookups(statements)) == 1


@pytest.mark.app_config(CREDENTIAL_CACHE_SECONDS=0)
def test_cache_off_looks_the_secret_up_every_time(http, shim, access_token, statements):
    for _ in range(2):
        assert introspect(http, shim[0], shim[1], access_token).status_code == 200
    assert len(secret_lookups(statements)) == 2


@pytest.mark.app_config(CREDENTIAL_CACHE_SECONDS=0)
def test_cache_off_reads_no_generation(http, shim, access_token, monkeypatch):
    """With the cache off, a caller costs the one lookup: no generation read, nothing kept.

    The generation query is broken here, so any read of it would fail the call.
    """
    monkeypatch.setattr(client_service, "_GENERATION", "SELECT generation FROM no_such_table")
    for _ in range(2):
        assert introspect(http, shim[0], shim[1], access_token).get_json()["active"] is True
    # On PostgreSQL introspection reads the generation with the token; a caller that
    # did not read it (the token endpoint's client, a form without a token) is here.
    assert client_service.match_secret(shim[0], shim[1]) is not None


@pytest.mark.app_config(CREDENTIAL_CACHE_SECONDS=60)
def test_cached_row_is_read_again_once_its_seconds_are_up(
    http, shim, access_token, statements, monkeypatch
):
    """Unchanged credentials too are looked up again after CREDENTIAL_CACHE_SECONDS."""
    clock = [5000.0]
    monkeypatch.setattr(client_service, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    for tick, lookups in ((0, 1), (59, 1), (1, 2), (59, 2), (1, 3)):
        clock[0] += tick
        assert introspect(http, shim[0], shim[1], access_token).status_code == 200
        assert len(secret_lookups(statements)) == lookups


def test_wrong_secret_refused_even_when_the_right_one_is_cached(http, shim, access_token):
    assert introspect(http, shim[0], shim[1], access_token).status_code == 200
    assert introspect(http, shim[0], shim[1] + "x", access_token).status_code == 401
    assert introspect(http, "rs_other", shim[1], access_token).status_code == 401


def test_right_secret_with_an_owner_id_sorting_beside_its_own_is_refused(
    http, shim, access_token, oauth_client, client_secret
):
    """The secret is found by its digest; the owner id must then be exactly its owner's."""
    for owner_id, secret in (shim, (oauth_client.client_id, client_secret)):
        assert client_service.match_secret(owner_id, secret) is not None
        for neighbour in (owner_id[:-1], owner_id + "~"):
            assert client_service.match_secret(neighbour, secret) is None
    assert introspect(http, shim[0] + "~", shim[1], access_token).status_code == 401


def test_disabled_resource_server_refused_at_once(http, shim, access_token):
    assert introspect(http, shim[0], shim[1], access_token).status_code == 200
    # Behind the app's back, as an admin with psql would: the trigger still counts it.
    db.session.execute(
        update(ResourceServer).where(ResourceServer.server_id == shim[0]).values(disabled=True)
    )
    db.session.commit()
    assert introspect(http, shim[0], shim[1], access_token).status_code == 401


def test_deleted_resource_server_refused_at_once(http, shim, access_token):
    assert introspect(http, shim[0], shim[1], access_token).status_code == 200
    client_service.delete_resource_server(shim[0])
    assert introspect(http, shim[0], shim[1], access_token).status_code == 401


def test_rotated_out_secret_refused_at_once(http, shim, access_token):
    assert introspect(http, shim[0], shim[1], access_token).status_code == 200
    server = client_service.require_resource_server(shim[0])
    issued = client_service.rotate_secret(server, overlap=timedelta(0), owner_id=shim[0])
    assert introspect(http, shim[0], shim[1], access_token).status_code == 401
    assert introspect(http, shim[0], issued.secret, access_token).status_code == 200


def test_old_secret_refused_at_once_when_its_overlap_is_ended(http, shim, access_token):
    server = client_service.require_resource_server(shim[0])
    issued = client_service.rotate_secret(server, overlap=timedelta(hours=1), owner_id=shim[0])
    assert introspect(http, shim[0], shim[1], access_token).status_code == 200
    client_service.expire_old_secrets(server, owner_id=shim[0])
    assert introspect(http, shim[0], shim[1], access_token).status_code == 401
    assert introspect(http, shim[0], issued.secret, access_token).status_code == 200


def test_cached_old_secret_refused_from_the_second_its_overlap_ends(http, app, user, oauth_client):
    with freeze_time(FROZEN) as clock:
        token = make_tokens(user, oauth_client)["access_token"]
        server, old = client_service.register_resource_server("Shim")
        client_service.rotate_secret(server, overlap=timedelta(hours=1), owner_id=server.server_id)
        assert introspect(http, server.server_id, old, token).status_code == 200
        clock.tick(timedelta(hours=1) - timedelta(seconds=1))
        assert introspect(http, server.server_id, old, token).status_code == 200
        clock.tick(timedelta(seconds=1))
        assert introspect(http, server.server_id, old, token).status_code == 401


def test_disabled_client_refused_at_once_on_refresh(http, user, oauth_client, client_secret):
    tokens = make_tokens(user, oauth_client)
    first = refresh(http, oauth_client, client_secret, tokens["refresh_token"])
    assert first.status_code == 200
    client_service.update_client(
        oauth_client.client_id, disabled=True, default_access=3600, default_grace=120
    )
    second = refresh(http, oauth_client, client_secret, first.get_json()["refresh_token"])
    assert second.status_code == 401


def test_client_secret_rotated_out_refused_at_once_on_refresh(
    http, user, oauth_client, client_secret
):
    tokens = make_tokens(user, oauth_client)
    first = refresh(http, oauth_client, client_secret, tokens["refresh_token"])
    assert first.status_code == 200
    issued = client_service.rotate_secret(
        oauth_client, overlap=timedelta(0), owner_id=oauth_client.client_id
    )
    following = first.get_json()["refresh_token"]
    assert refresh(http, oauth_client, client_secret, following).status_code == 401
    assert refresh(http, oauth_client, issued.secret, following).status_code == 200


def test_changed_client_rules_seen_at_once_on_refresh(http, user, oauth_client, client_secret):
    tokens = make_tokens(user, oauth_client)
    first = refresh(http, oauth_client, client_secret, tokens["refresh_token"])
    assert first.get_json()["expires_in"] == 3600
    db.session.execute(
        update(OAuth2Client)
        .where(OAuth2Client.id == oauth_client.id)
        .values(access_token_lifetime=60)
    )
    db.session.commit()
    second = refresh(http, oauth_client, client_secret, first.get_json()["refresh_token"])
    assert second.get_json()["expires_in"] == 60


def test_every_credential_table_has_its_change_trigger(app):
    """A later batch migration of these tables (SQLite recreates them) must re-create them."""
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        rows = connection.execute(
            text(
                "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND t.tgname LIKE 'credential_changes%'"
            )
        )
    else:
        rows = connection.execute(
            text(
                "SELECT tbl_name FROM sqlite_master "
                "WHERE type = 'trigger' AND name LIKE 'credential_changes%'"
            )
        )
    assert {row[0] for row in rows} == set(CACHED_TABLES)
    assert "credential_changes" in inspect(connection).get_table_names()


def test_last_use_written_once_a_minute_with_the_row_cached(http, user, oauth_client, statements):
    with freeze_time(FROZEN) as clock:
        token = make_tokens(user, oauth_client)["access_token"]
        server, secret = client_service.register_resource_server("Shim")

        def writes():
            return len([s for s in statements if s.startswith("UPDATE credential_secrets")])

        assert introspect(http, server.server_id, secret, token).status_code == 200
        assert writes() == 1
        clock.tick(timedelta(seconds=30))
        assert introspect(http, server.server_id, secret, token).status_code == 200
        assert writes() == 1
        clock.tick(timedelta(seconds=31))
        assert introspect(http, server.server_id, secret, token).status_code == 200
        assert writes() == 2
        for _ in range(3):
            assert introspect(http, server.server_id, secret, token).status_code == 200
        assert writes() == 2


def test_failed_generation_read_raises_like_any_query(app, shim, monkeypatch):
    """The raw read's failure reaches the app as SQLAlchemy's DBAPIError (503 on outage)."""
    monkeypatch.setattr(client_service, "_GENERATION", "SELECT generation FROM no_such_table")
    with pytest.raises(DBAPIError):
        client_service.CredentialCache(60).lookup("0" * 64)


def test_noted_uses_are_bounded_by_max_entries(monkeypatch):
    # A worker's memory stays bounded whatever the number of secrets: once
    # MAX_ENTRIES uses are held, the next one starts afresh (and the rows' own
    # last_used_at is trusted again for the dropped ones).
    monkeypatch.setattr(client_service.CredentialCache, "MAX_ENTRIES", 2)
    cache = client_service.CredentialCache(ttl=60)
    when = datetime(2030, 1, 1, tzinfo=UTC)
    for secret_id in (1, 2, 3):
        cache.note_use(secret_id, when)
    assert cache.last_used_at(1, None) is None
    assert cache.last_used_at(2, None) is None
    assert cache.last_used_at(3, None) == when


def test_cached_rows_are_bounded_by_max_entries(http, app, monkeypatch, statements):
    # Two callers with MAX_ENTRIES 1: the second's row replaces the first's, so
    # the first caller is looked up again (never more than MAX_ENTRIES rows held).
    monkeypatch.setattr(client_service.CredentialCache, "MAX_ENTRIES", 1)
    first = client_service.register_resource_server("First")
    second = client_service.register_resource_server("Second")
    for server, secret in (first, second, first):
        response = introspect(http, server.server_id, secret, "unknown-token")
        assert response.get_json() == {"active": False}
    assert len(secret_lookups(statements)) == 3
