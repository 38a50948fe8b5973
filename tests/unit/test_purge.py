import json
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select

from authserver.database import db
from authserver.models import AccessToken
from authserver.models import AuthorizationCode
from authserver.models import RefreshToken
from authserver.models import TokenFamily
from authserver.services import codes as code_service
from authserver.services import purge as purge_service
from authserver.services import refresh as refresh_service
from authserver.services import revocation as revocation_service
from authserver.services.purge import PurgeResult

from ..factories import IFTTT_REDIRECT
from ..factories import make_tokens

FROZEN = "2030-01-01T00:00:00+00:00"
DAY = 24 * 3600


def new_code(user, oauth_client, raw):
    code_service.create_authorization_code(
        code=raw,
        oauth_client=oauth_client,
        user=user,
        redirect_uri=IFTTT_REDIRECT,
        scope="ifttt",
        code_challenge=None,
        code_challenge_method=None,
    )
    return code_service.find_authorization_code(raw, oauth_client)


def count(model, *where):
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def family_of(raw_refresh):
    row = revocation_service.find_token(raw_refresh, "refresh_token")
    assert isinstance(row, RefreshToken)
    return row.family_id


def test_successor_ciphertext_kept_inside_grace_and_erased_at_its_end(user, oauth_client):
    with freeze_time(FROZEN) as frozen:
        first = make_tokens(user, oauth_client)
        refresh_service.refresh(first["refresh_token"], oauth_client=oauth_client)
        rotated = RefreshToken.successor_ciphertext.is_not(None)
        frozen.tick(119)
        assert purge_service.purge() == PurgeResult(ciphertexts=0, codes=0, families=0)
        assert count(RefreshToken, rotated) == 1
        frozen.tick(1)
        assert purge_service.purge() == PurgeResult(ciphertexts=1, codes=0, families=0)
        assert count(RefreshToken, rotated) == 0
        # The rotated row itself stays: presenting it again is still reuse detection.
        assert count(RefreshToken) == 2


def test_successor_seed_erased_when_first_purged_long_after_its_grace(
    cli, committed, user, oauth_client
):
    """No purge ran for a week: a seed whose grace ended days ago is erased all the same."""
    with freeze_time(FROZEN) as frozen:
        first = make_tokens(user, oauth_client)
        refresh_service.refresh(first["refresh_token"], oauth_client=oauth_client)
        frozen.tick(7 * DAY)
        result = cli.invoke(args=["tokens", "purge", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "ciphertexts_erased": 1,
        "codes_deleted": 0,
        "families_deleted": 0,
    }
    seeds = select(RefreshToken.id).where(RefreshToken.successor_ciphertext.is_not(None))
    assert committed(seeds) == []
    assert len(committed(select(RefreshToken.id))) == 2


def test_expired_code_deleted_one_retention_after_expiry_and_live_code_kept(user, oauth_client):
    with freeze_time(FROZEN) as frozen:
        new_code(user, oauth_client, "expired-code")
        frozen.tick(600 + DAY - 1)
        new_code(user, oauth_client, "live-code")
        assert purge_service.purge().codes == 0
        assert count(AuthorizationCode) == 2
        frozen.tick(1)
        assert purge_service.purge().codes == 1
        assert count(AuthorizationCode) == 1
        assert code_service.find_authorization_code("live-code", oauth_client) is not None


def test_used_code_deleted_one_retention_after_use(user, oauth_client):
    with freeze_time(FROZEN) as frozen:
        code = new_code(user, oauth_client, "used-code")
        frozen.tick(30)
        code_service.redeem_authorization_code(
            code, oauth_client=oauth_client, include_refresh_token=True
        )
        frozen.tick(DAY - 1)
        assert purge_service.purge().codes == 0
        frozen.tick(1)
        result = purge_service.purge()
        assert result.codes == 1
        assert count(AuthorizationCode) == 0
        # The family the code produced is alive and stays.
        assert result.families == 0
        assert count(TokenFamily) == 1


def test_revoked_family_deleted_after_retention_with_its_tokens(user, oauth_client):
    with freeze_time(FROZEN) as frozen:
        dead = make_tokens(user, oauth_client)
        live = make_tokens(user, oauth_client)
        dead_id = family_of(dead["refresh_token"])
        revocation_service.revoke_family(dead_id, reason="admin")
        frozen.tick(DAY - 1)
        assert purge_service.purge().families == 0
        frozen.tick(1)
        assert purge_service.purge().families == 1
        assert db.session.get(TokenFamily, dead_id) is None
        # Tokens go with their family (ON DELETE CASCADE, on SQLite too).
        assert count(AccessToken, AccessToken.family_id == dead_id) == 0
        assert count(RefreshToken, RefreshToken.family_id == dead_id) == 0
        assert revocation_service.find_token(live["refresh_token"]) is not None


def test_family_revoked_long_before_the_retention_is_deleted(user, oauth_client):
    """Not only a family revoked exactly one retention ago: any older one too."""
    with freeze_time(FROZEN) as frozen:
        old_id = family_of(make_tokens(user, oauth_client)["refresh_token"])
        revocation_service.revoke_family(old_id, reason="admin")
        frozen.tick(30 * DAY)
        recent_id = family_of(make_tokens(user, oauth_client)["refresh_token"])
        revocation_service.revoke_family(recent_id, reason="admin")
        frozen.tick(DAY - 1)
        assert purge_service.purge().families == 1
        assert db.session.get(TokenFamily, old_id) is None
        assert db.session.get(TokenFamily, recent_id) is not None


def test_idle_family_with_live_refresh_token_kept_after_access_tokens_expire(user, oauth_client):
    """IFTTT's rule: refresh tokens never expire, so an idle grant is never purged."""
    with freeze_time(FROZEN) as frozen:
        tokens = make_tokens(user, oauth_client)
        frozen.tick(365 * DAY)
        assert purge_service.purge() == PurgeResult(ciphertexts=0, codes=0, families=0)
        assert refresh_service.refresh(tokens["refresh_token"], oauth_client=oauth_client).body[
            "access_token"
        ]


@pytest.mark.parametrize(("rows", "commits"), [(5, 3), (4, 2), (1, 1)])
def test_purge_commits_once_per_batch(user, oauth_client, rows, commits):
    with freeze_time(FROZEN) as frozen:
        for _ in range(rows):
            family_id = family_of(make_tokens(user, oauth_client)["refresh_token"])
            revocation_service.revoke_family(family_id, reason="admin")
        frozen.tick(DAY)
        seen = []

        def on_commit(_session):
            seen.append(1)

        session = db.session()
        event.listen(session, "after_commit", on_commit)
        try:
            result = purge_service.purge(batch_size=2)
        finally:
            event.remove(session, "after_commit", on_commit)
        assert result == PurgeResult(ciphertexts=0, codes=0, families=rows)
        assert len(seen) == commits
        assert count(TokenFamily) == 0


def test_purge_cli_reports_counts_as_json(cli, user, oauth_client):
    with freeze_time(FROZEN) as frozen:
        family_id = family_of(make_tokens(user, oauth_client)["refresh_token"])
        revocation_service.revoke_family(family_id, reason="admin")
        frozen.tick(timedelta(days=1))
        result = cli.invoke(args=["tokens", "purge", "--json"])
    assert result.exit_code == 0, result.output
    assert '"families_deleted": 1' in result.output


def redeem_without_refresh_token(user, oauth_client, raw):
    code = new_code(user, oauth_client, raw)
    return code_service.redeem_authorization_code(
        code, oauth_client=oauth_client, include_refresh_token=False
    )


def test_family_without_refresh_token_kept_until_retention_after_access_expiry(user, oauth_client):
    """A grant with no refresh token lives as long as its access token, plus retention."""
    with freeze_time(FROZEN) as frozen:
        body = redeem_without_refresh_token(user, oauth_client, "no-refresh")
        assert "refresh_token" not in body
        frozen.tick(3600 - 1)
        assert purge_service.purge().families == 0
        frozen.tick(1 + DAY - 1)
        assert purge_service.purge().families == 0
        assert count(TokenFamily) == 1
        frozen.tick(1)
        assert purge_service.purge().families == 1
        assert count(TokenFamily) == 0


def test_family_without_refresh_token_deleted_when_first_purged_long_after(user, oauth_client):
    """No purge ran for a week: an access token a week expired keeps nothing alive."""
    with freeze_time(FROZEN) as frozen:
        redeem_without_refresh_token(user, oauth_client, "no-refresh")
        frozen.tick(7 * DAY)
        assert purge_service.purge().families == 1
        assert count(TokenFamily) == 0


@pytest.mark.app_config(ACCESS_TOKEN_TTL=0)
def test_family_without_refresh_token_kept_while_access_token_never_expires(user, oauth_client):
    with freeze_time(FROZEN) as frozen:
        body = redeem_without_refresh_token(user, oauth_client, "no-refresh")
        assert "expires_in" not in body
        frozen.tick(365 * DAY)
        assert purge_service.purge().families == 0
        assert count(TokenFamily) == 1


def test_used_code_deleted_one_retention_after_use_while_its_expiry_is_more_recent(
    user, oauth_client
):
    # Used 30 s after issue and purged a minute past one retention after use: the
    # code's expiry (minutes after issue) is not yet one retention old, so only the
    # use makes it dead, and the purge must see that.
    with freeze_time(FROZEN) as frozen:
        code = new_code(user, oauth_client, "used-early")
        frozen.tick(30)
        code_service.redeem_authorization_code(
            code, oauth_client=oauth_client, include_refresh_token=True
        )
        frozen.tick(DAY + 60)
        assert count(AuthorizationCode) == 1
        assert purge_service.purge().codes == 1
        assert count(AuthorizationCode) == 0
