"""Issue 15: refresh policies per client (ifttt, google, alexa, strict)."""

import pytest
from freezegun import freeze_time
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from authserver.database import db
from authserver.models import OAuth2Client
from authserver.models import RefreshToken
from authserver.models import TokenFamily
from authserver.services import clients as client_service
from tests.factories import make_oauth_client

FROZEN = "2030-01-01T00:00:00+00:00"


def user_info(http, access_token):
    return http.get("/ifttt/v1/user/info", headers={"Authorization": f"Bearer {access_token}"})


def set_profile(app, oauth_client, profile, **overrides):
    client_service.update_client(
        oauth_client.client_id,
        policy=client_service.PolicyChange(profile=profile, **overrides),
        default_access=app.config["ACCESS_TOKEN_TTL"],
        default_grace=app.config["REFRESH_GRACE_SECONDS"],
    )


@pytest.fixture
def profiled(app, user, get_code, exchange):
    """Make a confidential client with a profile and its first token pair."""

    def _profiled(profile, **overrides):
        oauth_client, secret = make_oauth_client(
            policy=client_service.PolicyChange(profile=profile, **overrides)
        )
        pair = exchange(get_code(user, oauth_client), oauth_client.client_id, secret).get_json()
        return oauth_client, secret, pair

    return _profiled


def family():
    db.session.rollback()
    return db.session.scalars(select(TokenFamily)).one()


# Defaults -----------------------------------------------------------------------


def test_confidential_clients_default_to_ifttt_and_public_to_strict(app):
    confidential, _ = make_oauth_client()
    public, _ = make_oauth_client(public=True)
    assert confidential.token_policy(app.config).profile == "ifttt"
    assert public.token_policy(app.config).profile == "strict"


# google -------------------------------------------------------------------------


def test_google_old_token_works_three_hours_after_rotation_while_successor_unused(
    http, profiled, refresh
):
    with freeze_time(FROZEN) as frozen:
        oauth_client, secret, pair = profiled("google")
        r0 = pair["refresh_token"]
        first = refresh(r0, oauth_client.client_id, secret).get_json()
        frozen.tick(3 * 3600)
        late = refresh(r0, oauth_client.client_id, secret)
        assert late.status_code == 200
        body = late.get_json()
        assert body["refresh_token"] == first["refresh_token"]
        # The first answer's access token expired meanwhile: the replay's is new and works.
        assert body["access_token"] != first["access_token"]
        assert body["expires_in"] == 3600
        assert user_info(http, body["access_token"]).status_code == 200
        assert user_info(http, first["access_token"]).status_code == 401


def test_google_each_replay_gives_a_new_working_access_token(http, profiled, refresh):
    oauth_client, secret, pair = profiled("google")
    r0 = pair["refresh_token"]
    first = refresh(r0, oauth_client.client_id, secret).get_json()
    replays = [refresh(r0, oauth_client.client_id, secret).get_json() for _ in range(3)]
    access_tokens = {first["access_token"], *(body["access_token"] for body in replays)}
    assert len(access_tokens) == 4
    assert {body["refresh_token"] for body in replays} == {first["refresh_token"]}
    for token in access_tokens:
        assert user_info(http, token).status_code == 200
    # One successor only: the family never forks.
    assert db.session.scalar(select(func.count()).select_from(RefreshToken)) == 2


def test_google_old_token_is_reuse_once_the_successor_was_used(http, profiled, refresh):
    oauth_client, secret, pair = profiled("google")
    r0 = pair["refresh_token"]
    r1 = refresh(r0, oauth_client.client_id, secret).get_json()
    r2 = refresh(r1["refresh_token"], oauth_client.client_id, secret).get_json()
    stale = refresh(r0, oauth_client.client_id, secret)
    assert stale.status_code == 400
    assert stale.get_json()["error"] == "invalid_grant"
    assert family().revoke_reason == "reuse_detected"
    assert user_info(http, r2["access_token"]).status_code == 401


def test_google_successor_stays_sealed(profiled, refresh):
    oauth_client, secret, pair = profiled("google")
    body = refresh(pair["refresh_token"], oauth_client.client_id, secret).get_json()
    parent = db.session.scalars(select(RefreshToken).where(RefreshToken.parent_id.is_(None))).one()
    assert parent.successor_ciphertext
    assert body["refresh_token"].encode() not in parent.successor_ciphertext
    assert parent.grace_ends_at is None


# alexa --------------------------------------------------------------------------


def test_alexa_ten_refreshes_with_one_refresh_token(http, profiled, refresh):
    oauth_client, secret, pair = profiled("alexa")
    r0 = pair["refresh_token"]
    seen = set()
    for _ in range(10):
        answer = refresh(r0, oauth_client.client_id, secret)
        assert answer.status_code == 200
        body = answer.get_json()
        assert body["refresh_token"] == r0
        assert body["expires_in"] == 3600
        seen.add(body["access_token"])
    assert len(seen) == 10
    assert user_info(http, body["access_token"]).status_code == 200
    assert db.session.scalar(select(func.count()).select_from(RefreshToken)) == 1


@pytest.mark.app_config(ACCESS_TOKEN_TTL=0, REFRESH_GRACE_SECONDS=0)
def test_alexa_gets_expires_in_even_when_the_server_issues_non_expiring_tokens(profiled, refresh):
    oauth_client, secret, pair = profiled("alexa")
    assert pair["expires_in"] == 3600
    body = refresh(pair["refresh_token"], oauth_client.client_id, secret).get_json()
    assert body["expires_in"] == 3600


def test_alexa_refuses_a_non_expiring_access_ttl(app):
    from authserver.errors import ValidationError

    with pytest.raises(ValidationError, match="expires_in"):
        make_oauth_client(policy=client_service.PolicyChange(profile="alexa", access_ttl=0))


@pytest.mark.parametrize(
    ("change", "label"),
    [({"access_ttl": -1}, "access token lifetime"), ({"grace_seconds": -1}, "grace period")],
)
def test_negative_lifetimes_are_refused_by_the_service(app, change, label):
    """The CLI refuses them first; the service does too, for every other caller."""
    from authserver.errors import ValidationError

    with pytest.raises(ValidationError, match=f"{label} must not be negative"):
        make_oauth_client(policy=client_service.PolicyChange(**change))
    assert db.session.scalar(select(func.count()).select_from(OAuth2Client)) == 0


# strict -------------------------------------------------------------------------


def test_strict_immediate_replay_revokes_the_family(http, profiled, refresh):
    oauth_client, secret, pair = profiled("strict")
    r0 = pair["refresh_token"]
    r1 = refresh(r0, oauth_client.client_id, secret).get_json()
    replay = refresh(r0, oauth_client.client_id, secret)
    assert replay.status_code == 400
    assert replay.get_json()["error"] == "invalid_grant"
    assert family().revoke_reason == "reuse_detected"
    assert user_info(http, r1["access_token"]).status_code == 401
    parent = db.session.scalars(select(RefreshToken).where(RefreshToken.parent_id.is_(None))).one()
    assert parent.successor_ciphertext is None


# overrides and changes -------------------------------------------------------------


def test_override_no_reuse_revocation_on_strict(profiled, refresh):
    oauth_client, secret, pair = profiled("strict", reuse_revokes_family=False)
    r0 = pair["refresh_token"]
    refresh(r0, oauth_client.client_id, secret)
    assert refresh(r0, oauth_client.client_id, secret).status_code == 400
    assert family().revoked_at is None


def test_override_grace_until_used_on_ifttt(profiled, refresh):
    with freeze_time(FROZEN) as frozen:
        oauth_client, secret, pair = profiled("ifttt", grace_until_used=True)
        r0 = pair["refresh_token"]
        r1 = refresh(r0, oauth_client.client_id, secret).get_json()["refresh_token"]
        frozen.tick(86400)
        again = refresh(r0, oauth_client.client_id, secret)
        assert again.status_code == 200
        assert again.get_json()["refresh_token"] == r1


def test_policy_change_applies_from_the_next_refresh(app, http, profiled, refresh):
    oauth_client, secret, pair = profiled("ifttt")
    r0 = pair["refresh_token"]
    r1 = refresh(r0, oauth_client.client_id, secret).get_json()
    set_profile(app, oauth_client, "strict")
    # The rotation already made keeps its window: the existing grant is not broken.
    assert refresh(r0, oauth_client.client_id, secret).status_code == 200
    r2 = refresh(r1["refresh_token"], oauth_client.client_id, secret).get_json()
    # The next rotation follows strict: replaying r1 now revokes.
    assert refresh(r1["refresh_token"], oauth_client.client_id, secret).status_code == 400
    assert user_info(http, r2["access_token"]).status_code == 401


@pytest.mark.app_config(CREDENTIAL_CACHE_SECONDS=3600)
def test_policy_change_is_seen_through_the_credential_cache(app, profiled, refresh):
    oauth_client, secret, pair = profiled("ifttt")
    r0 = pair["refresh_token"]
    first = refresh(r0, oauth_client.client_id, secret).get_json()
    assert first["refresh_token"] != r0
    set_profile(app, oauth_client, "alexa")
    body = refresh(first["refresh_token"], oauth_client.client_id, secret).get_json()
    assert body["refresh_token"] == first["refresh_token"]


# Transient trouble ----------------------------------------------------------------


@pytest.mark.parametrize("profile", ["ifttt", "google", "alexa", "strict"])
def test_transient_database_trouble_is_503_with_retry_after(profile, app, profiled, refresh):
    """Zapier marks a connection stale on any 4xx but 408/409/423/425/429."""
    oauth_client, secret, pair = profiled(profile)

    # The access token's INSERT times out, whether it runs alone or inside the one
    # statement that rotates on PostgreSQL.
    def lock_timeout(conn, cursor, statement, parameters, context, executemany):
        if "INSERT INTO access_tokens" in statement:
            raise OperationalError(statement, {}, Exception("lock timeout"))

    event.listen(db.engine, "before_cursor_execute", lock_timeout)
    try:
        answer = refresh(pair["refresh_token"], oauth_client.client_id, secret)
    finally:
        event.remove(db.engine, "before_cursor_execute", lock_timeout)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert answer.get_json()["error"] == "temporarily_unavailable"
    # Nothing was half-written: the same token still refreshes.
    assert refresh(pair["refresh_token"], oauth_client.client_id, secret).status_code == 200
