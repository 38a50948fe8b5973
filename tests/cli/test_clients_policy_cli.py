"""`clients create/update/show` with refresh policies (issue 15)."""

import json

import pytest
from sqlalchemy import select

from authserver.database import db
from authserver.models import AuditEvent
from tests.factories import IFTTT_REDIRECT


def ok(cli, *args):
    result = cli.invoke(args=list(args))
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def create(cli, *extra):
    result = ok(
        cli, "clients", "create", "Home", "--redirect-uri", IFTTT_REDIRECT, "--json", *extra
    )
    return json.loads(result.stdout)


def show(cli, client_id):
    return json.loads(ok(cli, "clients", "show", client_id, "--json").stdout)["refresh_policy"]


def test_defaults_are_ifttt_for_confidential_and_strict_for_public(cli):
    confidential = create(cli)
    assert confidential["refresh_policy"] == {
        "profile": "ifttt",
        "rotation": True,
        "grace": 120,
        "reuse_revokes_family": True,
        "access_ttl": 3600,
        "max_replays": 0,
    }
    public = create(cli, "--public")
    assert public["refresh_policy"]["profile"] == "strict"
    assert public["refresh_policy"]["grace"] == 0


@pytest.mark.parametrize(
    ("profile", "rotation", "grace"),
    [("google", True, "until-used"), ("alexa", False, 0), ("strict", True, 0)],
)
def test_create_with_profile_shows_its_effective_policy(cli, profile, rotation, grace):
    document = create(cli, "--profile", profile)
    policy = show(cli, document["client_id"])
    assert (policy["profile"], policy["rotation"], policy["grace"]) == (profile, rotation, grace)


def test_overrides_on_create_and_update(cli):
    client_id = create(
        cli, "--profile", "strict", "--no-reuse-revokes-family", "--access-ttl", "10m"
    )["client_id"]
    policy = show(cli, client_id)
    assert (policy["reuse_revokes_family"], policy["access_ttl"]) == (False, 600)
    ok(cli, "clients", "update", client_id, "--grace", "until-used", "--no-rotation")
    policy = show(cli, client_id)
    assert (policy["profile"], policy["grace"], policy["rotation"]) == (
        "strict",
        "until-used",
        False,
    )
    ok(cli, "clients", "update", client_id, "--grace", "30")
    assert show(cli, client_id)["grace"] == 30
    # Choosing a profile clears the refresh overrides (the access TTL stays).
    ok(cli, "clients", "update", client_id, "--profile", "google")
    policy = show(cli, client_id)
    assert policy == {
        "profile": "google",
        "rotation": True,
        "grace": "until-used",
        "reuse_revokes_family": True,
        "access_ttl": 600,
        "max_replays": 0,
    }


def test_text_show_prints_the_policy_in_the_house_style(cli):
    client_id = create(cli, "--profile", "google")["client_id"]
    text = ok(cli, "clients", "show", client_id).stdout
    (line,) = [line for line in text.splitlines() if line.startswith("refresh_policy")]
    assert line.split(None, 1)[1] == (
        "google, rotation, grace until the successor is used, reuse revokes the grant, "
        "access tokens 1h"
    )
    assert "None" not in text
    assert "True" not in text
    assert "{" not in text


def test_policy_change_is_audited_with_before_and_after(cli):
    client_id = create(cli)["client_id"]
    ok(cli, "clients", "update", client_id, "--profile", "alexa")
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event_type == "client.changed")
    ).one()
    details = event.details
    assert "refresh_profile" in details["changes"]
    assert details["refresh_policy"]["before"]["profile"] == "ifttt"
    assert details["refresh_policy"]["after"]["profile"] == "alexa"


def test_grace_of_nine_digits_is_accepted_without_an_access_lifetime(cli):
    client_id = create(cli, "--grace", "999999999", "--access-ttl", "0")["client_id"]
    assert show(cli, client_id)["grace"] == 999999999


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--grace", "soon"), "--grace must be whole seconds"),
        # Sorts after "until-used": only that exact word means no time bound.
        (("--grace", "whenever"), "--grace must be whole seconds"),
        # Ten digits: past what the column holds, even with no access lifetime to bound it.
        (("--grace", "1000000000", "--access-ttl", "0"), "--grace must be whole seconds"),
        (("--profile", "alexa", "--access-ttl", "0"), "expires_in"),
        (("--grace", "7200"), "must not exceed the access token lifetime"),
        (("--profile", "zapier"), "zapier"),
    ],
)
def test_bad_policy_is_one_line_error(cli, args, message):
    result = cli.invoke(args=["clients", "create", "Home", "--redirect-uri", IFTTT_REDIRECT, *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
