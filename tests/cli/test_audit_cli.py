import json
import re
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError

from authserver.database import db
from authserver.models import AuditEvent
from authserver.services import users as user_service
from authserver.services.audit import EVENT_TYPES
from authserver.services.audit import record_event
from tests.cli.test_clients_cli import assert_one_line_error
from tests.cli.test_clients_cli import ok
from tests.cli.test_clients_cli import run
from tests.conftest import csrf_token_of
from tests.factories import PASSWORD

FROZEN = "2030-01-01T00:00:00+00:00"


def all_rows():
    return list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def rows_of(event_type):
    return [r for r in all_rows() if r.event_type == event_type]


def dump(rows):
    return json.dumps([[r.event_type, r.actor, r.client_id, r.username, r.details] for r in rows])


def post_login(http, username, password):
    token = csrf_token_of(http.get("/login").get_data(as_text=True))
    return http.post(
        "/login", data={"csrf_token": token, "username": username, "password": password}
    )


# The events themselves -----------------------------------------------------------


def test_client_lifecycle_is_audited(cli):
    with freeze_time(FROZEN):
        created = json.loads(
            ok(
                cli,
                "clients",
                "create",
                "IFTTT",
                "--redirect-uri",
                "https://ifttt.com/channels/acme/authorize",
                "--client-id",
                "ifttt",
                "--json",
            ).stdout
        )
        ok(cli, "clients", "update", "ifttt", "--name", "IFTTT 2")
        rotated = json.loads(ok(cli, "clients", "rotate-secret", "ifttt", "--json").stdout)
        ok(cli, "clients", "delete", "ifttt", "--yes")
    rows = all_rows()
    assert [(r.event_type, r.actor, r.client_id) for r in rows] == [
        ("client.created", "cli", "ifttt"),
        ("secret.created", "cli", "ifttt"),
        ("client.changed", "cli", "ifttt"),
        ("secret.rotated", "cli", "ifttt"),
        ("client.deleted", "cli", "ifttt"),
    ]
    assert rows[2].details == {"changes": ["name"]}
    assert all(r.created_at.isoformat() == "2030-01-01T00:00:00+00:00" for r in rows)
    text = dump(rows)
    assert created["client_secret"] not in text
    assert rotated["client_secret"] not in text


def test_user_lifecycle_is_audited(cli, app):
    with freeze_time(FROZEN):
        user_service.create_user("skyler", name="Skyler", password=PASSWORD)
        user_service.set_password("skyler", "another long password")
        user_service.set_disabled("skyler", disabled=True)
        ok(cli, "users", "delete", "skyler", "--yes")
    rows = all_rows()
    assert [(r.event_type, r.username, r.details) for r in rows] == [
        ("user.created", "skyler", {}),
        ("user.changed", "skyler", {"change": "password"}),
        ("user.changed", "skyler", {"change": "disabled"}),
        ("user.deleted", "skyler", {}),
    ]
    assert PASSWORD not in dump(rows)
    assert "another long password" not in dump(rows)


def test_failed_login_records_username_only(http, user):
    response = post_login(http, "walter", "not the password")
    assert response.status_code == 401
    (row,) = rows_of("login.failed")
    assert row.username == "walter"
    assert row.details == {}
    assert "not the password" not in dump(all_rows())


def test_failed_client_authentication_is_audited(http, oauth_client, client_secret, exchange):
    response = exchange("some-code", "ifttt", client_secret + "x")
    assert response.status_code == 401
    (row,) = rows_of("client.auth_failed")
    assert row.client_id == "ifttt"
    assert client_secret not in dump(all_rows())
    assert "some-code" not in dump(all_rows())


@pytest.mark.parametrize("how", ["admin_cli", "admin_client", "user", "reuse", "code_replay"])
def test_family_revocation_records_reason(
    cli, http, user, oauth_client, client_secret, get_code, exchange, refresh, how
):
    code = get_code(user, oauth_client)
    body = exchange(code, "ifttt", client_secret).get_json()
    if how == "admin_cli":
        ok(cli, "tokens", "revoke", "--user", "walter")
        expected = "admin"
    elif how == "admin_client":
        ok(cli, "clients", "revoke-tokens", "ifttt")
        expected = "admin"
    elif how == "user":
        page = http.get("/account/apps").get_data(as_text=True)
        http.post(
            "/account/apps/revoke", data={"csrf_token": csrf_token_of(page), "client_id": "ifttt"}
        )
        expected = "user_revoked"
    elif how == "reuse":
        r1 = refresh(body["refresh_token"], "ifttt", client_secret).get_json()["refresh_token"]
        assert refresh(r1, "ifttt", client_secret).status_code == 200
        assert refresh(body["refresh_token"], "ifttt", client_secret).status_code == 400
        expected = "reuse_detected"
    else:
        assert exchange(code, "ifttt", client_secret).status_code == 400
        expected = "code_replay"
    (row,) = rows_of("family.revoked")
    assert (row.client_id, row.username) == ("ifttt", "walter")
    assert row.details["reason"] == expected
    assert isinstance(row.details["family"], int)
    text = dump(all_rows())
    for credential in (client_secret, code, body["access_token"], body["refresh_token"]):
        assert credential not in text


def test_no_row_ever_holds_a_credential(
    cli, http, user, oauth_client, client_secret, get_code, exchange, refresh
):
    """Drive every kind of event, then search every column of every row."""
    code = get_code(user, oauth_client)
    body = exchange(code, "ifttt", client_secret).get_json()
    refreshed = refresh(body["refresh_token"], "ifttt", client_secret).get_json()
    exchange(code, "ifttt", client_secret)
    rotated = json.loads(ok(cli, "clients", "rotate-secret", "ifttt", "--json").stdout)
    exchange("x", "ifttt", client_secret)
    exchange("x", "ifttt", "wrong-" + client_secret)
    issued = json.loads(
        ok(cli, "tokens", "issue", "--user", "walter", "--client", "ifttt", "--json").stdout
    )
    post_login(http, "walter", "wrong " + PASSWORD)
    shim = json.loads(ok(cli, "resource-servers", "create", "Shim", "--json").stdout)
    shim_rotated = json.loads(
        ok(cli, "resource-servers", "rotate-secret", shim["id"], "--json").stdout
    )
    ok(cli, "users", "delete", "walter", "--yes")
    rows = all_rows()
    assert {
        "secret.used_old",
        "secret.rotated",
        "family.revoked",
        "client.auth_failed",
        "login.failed",
        "token.issued",
        "user.deleted",
    } <= {r.event_type for r in rows}
    text = dump(rows)
    for credential in (
        client_secret,
        rotated["client_secret"],
        code,
        body["access_token"],
        body["refresh_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
        issued["access_token"],
        issued["refresh_token"],
        PASSWORD,
        shim["secret"],
        shim_rotated["client_secret"],
    ):
        assert credential not in text


def test_record_event_refuses_credential_details(app):
    with pytest.raises(ValueError, match="must not carry credentials"):
        record_event("secret.created", client_id="ifttt", client_secret="s3cret")
    db.session.rollback()


# Append-only at the database -----------------------------------------------------


def test_audit_rows_cannot_be_updated_but_can_be_deleted(app, oauth_client):
    before = [(r.id, r.event_type) for r in all_rows()]
    db.session.rollback()
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(update(AuditEvent).values(event_type="client.deleted"))
    db.session.rollback()
    assert [(r.id, r.event_type) for r in all_rows()] == before
    db.session.execute(delete(AuditEvent).where(AuditEvent.event_type == "secret.created"))
    db.session.commit()
    assert [r.event_type for r in all_rows()] == ["client.created"]


# `authserver audit` ---------------------------------------------------------------


@pytest.fixture
def history(app):
    """Events two days ago, one hour ago and now, for two clients and a user."""
    with freeze_time("2029-12-30T00:00:00+00:00"):
        record_event("client.created", actor="cli", client_id="old")
        db.session.commit()
    with freeze_time("2029-12-31T23:00:00+00:00"):
        record_event("client.created", actor="cli", client_id="ifttt")
        record_event("login.failed", username="walter")
        db.session.commit()
    with freeze_time(FROZEN):
        record_event(
            "secret.rotated",
            actor="cli",
            client_id="ifttt",
            old_secret_expires_at="2030-01-02T00:00:00+00:00",
        )
        db.session.commit()


def test_audit_json_is_one_document_newest_first(cli, history):
    rows = json.loads(ok(cli, "audit", "--json").stdout)
    assert [(r["time"], r["type"], r["client_id"], r["username"]) for r in rows] == [
        ("2030-01-01T00:00:00Z", "secret.rotated", "ifttt", None),
        ("2029-12-31T23:00:00Z", "login.failed", None, "walter"),
        ("2029-12-31T23:00:00Z", "client.created", "ifttt", None),
        ("2029-12-30T00:00:00Z", "client.created", "old", None),
    ]
    assert rows[0]["details"] == {"old_secret_expires_at": "2030-01-02T00:00:00Z"}
    assert rows[3]["actor"] == "cli"
    assert rows[3]["count"] == 1


def test_audit_table_by_default(cli, history):
    lines = ok(cli, "audit").stdout.splitlines()
    assert lines[0].split() == [
        "TIME",
        "TYPE",
        "CLIENT_ID",
        "RESOURCE_SERVER",
        "USERNAME",
        "FAMILY",
        "DETAILS",
    ]
    assert len(lines) == 5
    # Every time in one format, a stored "+00:00" included.
    assert lines[1].split() == [
        "2030-01-01T00:00:00Z",
        "secret.rotated",
        "ifttt",
        "old_secret_expires_at=2030-01-02T00:00:00Z",
    ]


def test_audit_since_keeps_recent_events(cli, history):
    with freeze_time(FROZEN):
        rows = json.loads(ok(cli, "audit", "--since", "24h", "--json").stdout)
        assert [r["type"] for r in rows] == ["secret.rotated", "login.failed", "client.created"]
        rows = json.loads(ok(cli, "audit", "--since", "3600s", "--json").stdout)
        assert [r["time"] for r in rows] == [
            "2030-01-01T00:00:00Z",
            "2029-12-31T23:00:00Z",
            "2029-12-31T23:00:00Z",
        ]
        rows = json.loads(ok(cli, "audit", "--since", "3599s", "--json").stdout)
        assert [r["type"] for r in rows] == ["secret.rotated"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--client", "ifttt"), ["secret.rotated", "client.created"]),
        (("--user", "walter"), ["login.failed"]),
        (("--type", "client.created"), ["client.created", "client.created"]),
        (("--type", "client.created", "--client", "old"), ["client.created"]),
        (("--client", "nobody"), []),
    ],
)
def test_audit_filters(cli, history, args, expected):
    rows = json.loads(ok(cli, "audit", *args, "--json").stdout)
    assert [r["type"] for r in rows] == expected


def test_audit_empty_table_says_none(cli, app):
    assert ok(cli, "audit").stdout.splitlines()[-1] == "(none)"


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("5x", "is not a duration"),
        ("-1h", "is negative"),
        ("999999999d", "is too long"),
    ],
)
def test_audit_bad_since_is_one_line_error(cli, app, since, message):
    assert_one_line_error(run(cli, "audit", f"--since={since}"), "--since", message)


def test_audit_unknown_type_is_refused(cli, app):
    result = run(cli, "audit", "--type", "nonsense")
    assert result.exit_code == 2
    assert "nonsense" in result.stderr
    assert "Traceback" not in result.output


def test_every_recorded_type_is_filterable():
    # `--type` offers EVENT_TYPES; every type the code records must be among them.
    source = Path(__file__).parents[2] / "authserver"
    recorded = set()
    for path in source.rglob("*.py"):
        recorded.update(
            re.findall(r'record_(?:event|failure)(?:_now)?\(\s*"([a-z_.]+)"', path.read_text())
        )
    assert {"secret.rotated", "secret.used_old", "family.revoked", "login.failed"} <= recorded
    assert recorded <= set(EVENT_TYPES)


# Issue 13: the audit trail under attack -------------------------------------------

FORGERY = "\x1b[2K\rwalter"


def test_control_characters_in_a_login_username_never_reach_the_terminal(http, cli, app):
    assert post_login(http, FORGERY, "guess").status_code == 401
    for output in (ok(cli, "audit").stdout, ok(cli, "audit", "--json").stdout):
        assert "\x1b" not in output
        assert "\r" not in output
    assert "\\x1b[2K\\x0dwalter" in ok(cli, "audit").stdout


def test_control_characters_never_reach_the_text_log(http, app, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="authserver")
    assert post_login(http, FORGERY, "guess").status_code == 401
    handler = next(h for h in logging.getLogger("authserver").handlers if hasattr(h, "_authserver"))
    lines = [handler.format(record) for record in caplog.records]
    assert any("walter" in line for line in lines)
    for line in lines:
        assert "\x1b" not in line
        assert "\r" not in line
        assert "\n" not in line


def test_audit_lists_newest_first_and_says_when_the_limit_cut_it(cli, history):
    rows = json.loads(ok(cli, "audit", "--json").stdout)
    assert [r["time"] for r in rows] == [
        "2030-01-01T00:00:00Z",
        "2029-12-31T23:00:00Z",
        "2029-12-31T23:00:00Z",
        "2029-12-30T00:00:00Z",
    ]
    assert [r["type"] for r in rows[1:3]] == ["login.failed", "client.created"]
    complete = run(cli, "audit")
    assert "limit" not in complete.stderr
    cut = run(cli, "audit", "--limit", "2")
    assert cut.exit_code == 0
    assert len(cut.stdout.splitlines()) == 3
    assert "newest 2 events shown" in cut.stderr
    assert "--limit" in cut.stderr
    cut_json = run(cli, "audit", "--limit", "2", "--json")
    assert len(json.loads(cut_json.stdout)) == 2
    assert "newest 2 events shown" in cut_json.stderr


def test_audit_odd_limit_shows_that_many_events_and_says_more_match(cli, history):
    cut = run(cli, "audit", "--limit", "3", "--json")
    assert [r["time"] for r in json.loads(cut.stdout)] == [
        "2030-01-01T00:00:00Z",
        "2029-12-31T23:00:00Z",
        "2029-12-31T23:00:00Z",
    ]
    assert "newest 3 events shown" in cut.stderr
    single = run(cli, "audit", "--limit", "1")
    assert len(single.stdout.splitlines()) == 2
    assert "newest 1 events shown" in single.stderr


def test_audit_purge_deletes_events_older_than_the_given_age(cli, history):
    with freeze_time(FROZEN):
        result = ok(cli, "audit", "purge", "--older-than", "1d")
    assert "1" in result.stdout
    assert [r.client_id for r in rows_of("client.created")] == ["ifttt"]
    assert len(all_rows()) == 3
    with freeze_time(FROZEN):
        ok(cli, "audit", "purge", "--older-than", "3599s")
    assert [r.event_type for r in all_rows()] == ["secret.rotated"]


def test_audit_purge_requires_an_age(cli, app):
    result = run(cli, "audit", "purge")
    assert result.exit_code == 2
    assert "--older-than" in result.stderr


@pytest.mark.app_config(RATE_LIMITS="off")
def test_failed_client_authentication_flood_is_aggregated_per_address_id_and_minute(
    http, oauth_client
):
    wrong = {
        "grant_type": "refresh_token",
        "refresh_token": "x",
        "client_id": oauth_client.client_id,
        "client_secret": "wrong",
    }
    with freeze_time("2030-01-01T00:00:10+00:00") as clock:
        http.environ_base["REMOTE_ADDR"] = "203.0.113.7"
        for _ in range(150):
            assert http.post("/oauth/token", data=wrong).status_code == 401
        http.post("/oauth/token", data={**wrong, "client_id": "other"})
        http.environ_base["REMOTE_ADDR"] = "203.0.113.8"
        http.post("/oauth/token", data=wrong)
        clock.tick(60)
        http.environ_base["REMOTE_ADDR"] = "203.0.113.7"
        http.post("/oauth/token", data=wrong)
    rows = rows_of("client.auth_failed")
    assert [(r.address, r.client_id, r.count) for r in rows] == [
        ("203.0.113.7", oauth_client.client_id, 150),
        ("203.0.113.7", "other", 1),
        ("203.0.113.8", oauth_client.client_id, 1),
        ("203.0.113.7", oauth_client.client_id, 1),
    ]


@pytest.mark.app_config(RATE_LIMITS="off")
def test_failure_joins_only_the_row_of_its_own_minute(http, oauth_client):
    """A minute's row spans [hh:mm:00, hh:mm+1:00), both ends exactly.

    The last failure comes from a worker whose clock is a moment behind, after
    another worker counted one at the first instant of the next minute.
    """
    wrong = {
        "grant_type": "refresh_token",
        "refresh_token": "x",
        "client_id": oauth_client.client_id,
        "client_secret": "wrong",
    }
    with freeze_time("2030-01-01T00:00:00+00:00") as clock:
        assert http.post("/oauth/token", data=wrong).status_code == 401
        clock.move_to("2030-01-01T00:01:00+00:00")
        assert http.post("/oauth/token", data=wrong).status_code == 401
        clock.move_to("2030-01-01T00:00:59.999999+00:00")
        assert http.post("/oauth/token", data=wrong).status_code == 401
    rows = rows_of("client.auth_failed")
    assert [(r.created_at.isoformat(), r.count) for r in rows] == [
        ("2030-01-01T00:00:00+00:00", 2),
        ("2030-01-01T00:01:00+00:00", 1),
    ]


@pytest.mark.app_config(RATE_LIMITS="off")
def test_failed_login_flood_is_aggregated_and_counted_in_the_listing(http, cli, user):
    with freeze_time("2030-01-01T00:00:10+00:00"):
        for _ in range(20):
            assert post_login(http, "walter", "guess").status_code == 401
    rows = rows_of("login.failed")
    assert [(r.username, r.address, r.count) for r in rows] == [("walter", "127.0.0.1", 20)]
    (listed,) = json.loads(ok(cli, "audit", "--type", "login.failed", "--json").stdout)
    assert listed["count"] == 20
    assert "count=20" in ok(cli, "audit").stdout


def test_only_the_count_of_an_audit_row_may_grow(app, oauth_client):
    db.session.rollback()
    db.session.execute(update(AuditEvent).values(count=AuditEvent.count + 1))
    db.session.commit()
    for change in ({"count": 0}, {"client_id": "forged"}, {"address": "192.0.2.1"}):
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(update(AuditEvent).values(**change))
        db.session.rollback()
