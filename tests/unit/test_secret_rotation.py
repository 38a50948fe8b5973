from datetime import timedelta

import click
import pytest
from freezegun import freeze_time
from sqlalchemy import select

from authserver.cli.output import MAX_DURATION
from authserver.cli.output import parse_duration
from authserver.clock import utcnow
from authserver.database import db
from authserver.errors import ValidationError
from authserver.models import AuditEvent
from authserver.models import CredentialSecret
from authserver.services import clients as client_service
from tests.factories import make_oauth_client

FROZEN = "2030-01-01T00:00:00+00:00"
HOUR = timedelta(hours=1)


@pytest.fixture
def pair(app):
    with freeze_time(FROZEN):
        oauth_client, secret = make_oauth_client(client_id="ifttt")
    return oauth_client, secret


def used_old_count():
    return len(
        list(
            db.session.scalars(select(AuditEvent).where(AuditEvent.event_type == "secret.used_old"))
        )
    )


def accepts(owner, secret):
    """Authenticate the way the endpoints do: one lookup by the secret's digest."""
    owner_id = owner.client_id if hasattr(owner, "client_id") else owner.server_id
    return client_service.match_secret(owner_id, secret) is not None


def check(owner, secret):
    """Authenticate the way the endpoints do, including the last-use bookkeeping."""
    match = client_service.match_secret(owner.client_id, secret)
    if match is not None:
        client_service.note_secret_use(match)
    return match is not None


# Durations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("24h", 86400),
        ("7d", 604800),
        (" 2h ", 7200),
        ("3650d", 3650 * 86400),
    ],
)
def test_parse_duration_accepts_documented_forms(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5x", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("", "is not a duration"),
        ("h", "is not a duration"),
        ("1h30m", "is not a duration"),
        ("1H", "is not a duration"),
        ("-1h", "is negative"),
        ("-0", "is negative"),
        ("3651d", "is too long"),
        ("9" * 10, "is not a duration"),
    ],
)
def test_parse_duration_refuses_anything_else(text, message):
    with pytest.raises(click.BadParameter, match=message):
        parse_duration(text)


def test_longest_duration_still_fits_datetime_arithmetic():
    with freeze_time(FROZEN):
        assert (utcnow() + MAX_DURATION).year == 2039


# Rotation -------------------------------------------------------------------------


def test_rotation_keeps_old_secret_until_overlap_ends(pair):
    oauth_client, old = pair
    with freeze_time(FROZEN) as frozen:
        issued = client_service.rotate_secret(oauth_client, overlap=HOUR, owner_id="ifttt")
        assert issued.old_secret_expires_at is not None
        assert issued.old_secret_expires_at.isoformat() == "2030-01-01T01:00:00+00:00"
        assert issued.ended_early == 0
        assert accepts(oauth_client, old)
        assert accepts(oauth_client, issued.secret)
        frozen.tick(3599)
        assert accepts(oauth_client, old)
        frozen.tick(1)
        assert not accepts(oauth_client, old)
        assert accepts(oauth_client, issued.secret)
        assert len(oauth_client.live_secrets()) == 1


def test_at_most_two_secrets_live_after_many_rotations(pair):
    oauth_client, first = pair
    with freeze_time(FROZEN) as frozen:
        issued = []
        for _ in range(4):
            frozen.tick(10)
            issued.append(
                client_service.rotate_secret(oauth_client, overlap=HOUR, owner_id="ifttt")
            )
        assert [i.ended_early for i in issued] == [0, 1, 1, 1]
        live = oauth_client.live_secrets()
        assert len(live) == 2
        assert [accepts(oauth_client, s) for s in (first, *[i.secret for i in issued])] == [
            False,
            False,
            False,
            True,
            True,
        ]
    # Ended secrets keep their row (history); they are just expired.
    assert len(db.session.scalars(select(CredentialSecret)).all()) == 5


def test_zero_overlap_leaves_one_secret(pair):
    oauth_client, old = pair
    with freeze_time(FROZEN):
        issued = client_service.rotate_secret(oauth_client, overlap=timedelta(0), owner_id="ifttt")
        assert issued.old_secret_expires_at is not None
        assert issued.old_secret_expires_at.isoformat() == "2030-01-01T00:00:00+00:00"
        assert not accepts(oauth_client, old)
        assert [s.expires_at for s in oauth_client.live_secrets()] == [None]


def test_negative_overlap_is_refused(pair):
    oauth_client, _old = pair
    with pytest.raises(ValidationError, match="must not be negative"):
        client_service.rotate_secret(oauth_client, overlap=timedelta(seconds=-1), owner_id="ifttt")
    assert len(oauth_client.live_secrets()) == 1


def test_expire_old_secrets_counts_what_it_ended(pair):
    oauth_client, old = pair
    with freeze_time(FROZEN):
        assert client_service.expire_old_secrets(oauth_client, owner_id="ifttt") == 0
        client_service.rotate_secret(oauth_client, overlap=HOUR, owner_id="ifttt")
        assert client_service.expire_old_secrets(oauth_client, owner_id="ifttt") == 1
        assert not accepts(oauth_client, old)


def test_disabled_owner_rejects_even_the_right_secret(pair):
    oauth_client, secret = pair
    oauth_client.disabled = True
    db.session.flush()
    assert not accepts(oauth_client, secret)
    db.session.rollback()


def test_resource_server_rotation_follows_the_same_rules(app):
    with freeze_time(FROZEN) as frozen:
        server, old = client_service.register_resource_server("Shim")
        issued = client_service.rotate_secret(
            server, overlap=timedelta(seconds=90), owner_id=server.server_id
        )
        assert accepts(server, old)
        frozen.tick(89)
        assert accepts(server, old)
        frozen.tick(1)
        assert not accepts(server, old)
        assert accepts(server, issued.secret)


# Last use and old-secret auditing ---------------------------------------------------


def test_last_used_is_written_at_most_once_a_minute(pair):
    oauth_client, secret = pair
    with freeze_time(FROZEN) as frozen:
        assert check(oauth_client, secret)
        db.session.expire_all()
        assert oauth_client.live_secrets()[0].last_used_at.isoformat() == (
            "2030-01-01T00:00:00+00:00"
        )
        frozen.tick(59)
        assert check(oauth_client, secret)
        db.session.expire_all()
        assert oauth_client.live_secrets()[0].last_used_at.isoformat() == (
            "2030-01-01T00:00:00+00:00"
        )
        frozen.tick(1)
        assert check(oauth_client, secret)
        db.session.expire_all()
        assert oauth_client.live_secrets()[0].last_used_at.isoformat() == (
            "2030-01-01T00:01:00+00:00"
        )
    assert used_old_count() == 0


def test_first_old_secret_use_after_rotation_is_audited_even_right_after_a_use(pair):
    oauth_client, old = pair
    with freeze_time(FROZEN) as frozen:
        assert check(oauth_client, old)
        frozen.tick(5)
        client_service.rotate_secret(oauth_client, overlap=HOUR, owner_id="ifttt")
        frozen.tick(5)
        assert check(oauth_client, old)
        assert used_old_count() == 1
        frozen.tick(30)
        assert check(oauth_client, old)
        assert used_old_count() == 1
        frozen.tick(30)
        assert check(oauth_client, old)
        assert used_old_count() == 2


def test_new_secret_use_is_not_audited_as_old(pair):
    oauth_client, _ = pair
    with freeze_time(FROZEN):
        issued = client_service.rotate_secret(oauth_client, overlap=HOUR, owner_id="ifttt")
        assert check(oauth_client, issued.secret)
    assert used_old_count() == 0


def test_rejected_secret_records_nothing(pair):
    oauth_client, _ = pair
    assert not check(oauth_client, "wrong")
    assert all(s.last_used_at is None for s in oauth_client.live_secrets())


def test_rotation_audit_names_owner_and_expiry_only(app):
    with freeze_time(FROZEN):
        server, old = client_service.register_resource_server("Shim")
        issued = client_service.rotate_secret(server, overlap=HOUR, owner_id=server.server_id)
    row = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event_type == "secret.rotated")
    ).one()
    assert row.details == {
        "resource_server": server.server_id,
        "old_secret_expires_at": "2030-01-01T01:00:00Z",
    }
    assert old not in str(row.details)
    assert issued.secret not in str(row.details)
