import json
import logging
import secrets

import pytest
from freezegun import freeze_time
from sqlalchemy import func
from sqlalchemy import select

from authserver.database import db
from authserver.models import AuditEvent
from authserver.models import OAuth2Client
from authserver.models import TokenFamily
from authserver.services import clients as client_service
from tests.conftest import csrf_token_of
from tests.factories import IFTTT_REDIRECT
from tests.factories import STAGING_REDIRECT
from tests.factories import authorize_url
from tests.factories import basic_auth
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user

FROZEN = "2030-01-01T00:00:00+00:00"
USER_INFO = "/ifttt/v1/user/info"


# Helpers ------------------------------------------------------------------------


def run(cli, *args):
    """Invoke `authserver ARGS...`; return the result (no exit-code assertion)."""
    return cli.invoke(args=list(args))


def ok(cli, *args):
    result = run(cli, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def assert_one_line_error(result, *fragments):
    """A non-zero exit, exactly one line on stderr, no traceback."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def rotate(cli, client_id="ifttt", overlap="1h"):
    """Rotate through the CLI with --json; return the parsed document and the result."""
    result = ok(cli, "clients", "rotate-secret", client_id, "--overlap", overlap, "--json")
    return json.loads(result.stdout), result


def token_status(get_code, exchange, user, oauth_client, secret):
    """Drive a whole code exchange with this secret; return (status, body)."""
    code = get_code(user, oauth_client)
    response = exchange(code, oauth_client.client_id, secret)
    return response.status_code, response.get_json()


def assert_authenticates(get_code, exchange, user, oauth_client, secret):
    status, body = token_status(get_code, exchange, user, oauth_client, secret)
    assert status == 200, body
    return body


def assert_rejected(get_code, exchange, user, oauth_client, secret):
    status, body = token_status(get_code, exchange, user, oauth_client, secret)
    assert status == 401
    assert body["error"] == "invalid_client"


def events(event_type, client_id="ifttt"):
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.event_type == event_type, AuditEvent.client_id == client_id)
            .order_by(AuditEvent.id)
        )
    )


def user_info(http, access_token):
    return http.get(USER_INFO, headers={"Authorization": f"Bearer {access_token}"})


# Secret rotation ----------------------------------------------------------------


def test_both_secrets_authenticate_during_overlap(
    cli, user, oauth_client, client_secret, get_code, exchange
):
    with freeze_time(FROZEN):
        document, _ = rotate(cli)
        assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
        assert_authenticates(get_code, exchange, user, oauth_client, document["client_secret"])
        assert document["client_secret"] != client_secret


def test_old_secret_stops_exactly_when_overlap_ends(
    cli, user, oauth_client, client_secret, get_code, exchange
):
    with freeze_time(FROZEN) as frozen:
        document, _ = rotate(cli, overlap="1h")
        frozen.tick(3599)
        assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
        frozen.tick(1)
        assert_rejected(get_code, exchange, user, oauth_client, client_secret)
        assert_authenticates(get_code, exchange, user, oauth_client, document["client_secret"])


def test_rotate_json_is_one_document_with_iso_expiry(cli, oauth_client):
    with freeze_time(FROZEN):
        result = ok(cli, "clients", "rotate-secret", "ifttt", "--overlap", "90m", "--json")
    document = json.loads(result.stdout)  # exactly one JSON document, nothing else
    assert set(document) == {"client_id", "client_secret", "old_secret_expires_at"}
    assert document["client_id"] == "ifttt"
    assert document["old_secret_expires_at"] == "2030-01-01T01:30:00Z"
    assert len(document["client_secret"]) >= 43


def test_rotate_text_output_shows_secret_once_and_expiry(cli, oauth_client):
    with freeze_time(FROZEN):
        result = ok(cli, "clients", "rotate-secret", "ifttt", "--overlap", "15m")
    (secret_line,) = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert len(secret_line.strip()) >= 43
    assert "keeps working until 2030-01-01T00:15:00Z" in result.stdout
    assert result.stderr == ""


def test_default_overlap_is_24_hours(cli, oauth_client):
    with freeze_time(FROZEN):
        result = ok(cli, "clients", "rotate-secret", "ifttt", "--json")
    assert json.loads(result.stdout)["old_secret_expires_at"] == "2030-01-02T00:00:00Z"


def test_second_rotation_ends_oldest_secret_and_says_so(
    cli, user, oauth_client, client_secret, get_code, exchange
):
    with freeze_time(FROZEN) as frozen:
        first, _ = rotate(cli, overlap="1h")
        frozen.tick(60)
        second, result = rotate(cli, overlap="1h")
        assert "1 older secret(s) still in an overlap ended now" in result.stderr
        assert json.loads(result.stdout)["old_secret_expires_at"] == "2030-01-01T01:01:00Z"
        assert_rejected(get_code, exchange, user, oauth_client, client_secret)
        assert_authenticates(get_code, exchange, user, oauth_client, first["client_secret"])
        assert_authenticates(get_code, exchange, user, oauth_client, second["client_secret"])
        listed = json.loads(ok(cli, "clients", "secrets", "ifttt", "--json").stdout)
    assert [row["status"] for row in listed] == ["current", "previous"]
    assert [e.details["reason"] for e in events("secret.expired")] == ["superseded"]


def test_rotation_after_overlap_ended_says_nothing_on_stderr(cli, oauth_client):
    with freeze_time(FROZEN) as frozen:
        rotate(cli, overlap="1h")
        frozen.tick(3600)
        _, result = rotate(cli, overlap="1h")
    assert result.stderr == ""


def test_zero_overlap_ends_old_secret_now(
    cli, user, oauth_client, client_secret, get_code, exchange
):
    with freeze_time(FROZEN):
        document, _ = rotate(cli, overlap="0")
        assert document["old_secret_expires_at"] == "2030-01-01T00:00:00Z"
        text = ok(cli, "clients", "rotate-secret", "ifttt", "--overlap", "0").stdout
        assert "The previous secret stopped working now." in text
        assert_rejected(get_code, exchange, user, oauth_client, client_secret)
        assert_rejected(get_code, exchange, user, oauth_client, document["client_secret"])
        listed = json.loads(ok(cli, "clients", "secrets", "ifttt", "--json").stdout)
    assert len(listed) == 1


def test_tokens_survive_rotation(
    cli, http, user, oauth_client, client_secret, get_code, exchange, refresh
):
    with freeze_time(FROZEN):
        body = assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
        document, _ = rotate(cli, overlap="0")
        assert user_info(http, body["access_token"]).status_code == 200
        refreshed = refresh(body["refresh_token"], "ifttt", document["client_secret"])
        assert refreshed.status_code == 200, refreshed.get_json()
        assert user_info(http, refreshed.get_json()["access_token"]).status_code == 200


def test_secrets_lists_live_secrets_without_values(cli, user, get_code, exchange):
    with freeze_time(FROZEN) as frozen:
        oauth_client, client_secret = make_oauth_client(name="IFTTT", client_id="ifttt")
        frozen.tick(3600)
        document, _ = rotate(cli, overlap="2h")
        frozen.tick(600)
        assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
        table = ok(cli, "clients", "secrets", "ifttt")
        as_json = ok(cli, "clients", "secrets", "ifttt", "--json")
    for output in (table.stdout, as_json.stdout):
        assert client_secret not in output
        assert document["client_secret"] not in output
    rows = json.loads(as_json.stdout)
    assert [(r["status"], r["created_at"], r["expires_at"], r["last_used_at"]) for r in rows] == [
        ("current", "2030-01-01T01:00:00Z", None, None),
        ("previous", "2030-01-01T00:00:00Z", "2030-01-01T03:00:00Z", "2030-01-01T01:10:00Z"),
    ]
    header, current, previous = table.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "CREATED", "EXPIRES", "LAST", "USED"]
    assert current.split()[1:] == ["current", "2030-01-01T01:00:00Z", "never", "never"]
    assert previous.split()[1:] == [
        "previous",
        "2030-01-01T00:00:00Z",
        "2030-01-01T03:00:00Z",
        "2030-01-01T01:10:00Z",
    ]


def test_last_used_of_current_secret_is_updated(
    cli, user, oauth_client, client_secret, get_code, exchange
):
    with freeze_time(FROZEN) as frozen:
        frozen.tick(120)
        assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
        rows = json.loads(ok(cli, "clients", "secrets", "ifttt", "--json").stdout)
    assert rows[0]["last_used_at"] == "2030-01-01T00:02:00Z"
    assert events("secret.used_old") == []


def test_expire_secret_old_ends_overlap_now(
    cli, user, oauth_client, client_secret, get_code, exchange
):
    with freeze_time(FROZEN) as frozen:
        document, _ = rotate(cli, overlap="24h")
        frozen.tick(30)
        result = ok(cli, "clients", "expire-secret", "ifttt", "--old")
        assert "Ended 1 previous secret(s) of ifttt." in result.stdout
        assert_rejected(get_code, exchange, user, oauth_client, client_secret)
        assert_authenticates(get_code, exchange, user, oauth_client, document["client_secret"])
        again = ok(cli, "clients", "expire-secret", "ifttt", "--old")
    assert "has no previous secret in an overlap" in again.stdout
    assert [e.details["reason"] for e in events("secret.expired")] == ["admin"]


def test_old_secret_use_is_audited_and_logged(
    cli, user, oauth_client, client_secret, get_code, exchange, caplog
):
    with freeze_time(FROZEN) as frozen:
        rotate(cli, overlap="1h")
        frozen.tick(300)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="authserver.audit"):
            assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
        (row,) = events("secret.used_old")
        assert row.created_at.isoformat() == "2030-01-01T00:05:00+00:00"
        assert any(
            "secret.used_old" in r.getMessage() and "client_id=ifttt" in r.getMessage()
            for r in caplog.records
        )
        assert all(client_secret not in r.getMessage() for r in caplog.records)
        # Noted once a minute per secret, not on every call.
        assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
        assert len(events("secret.used_old")) == 1
        frozen.tick(60)
        assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
        assert len(events("secret.used_old")) == 2


def test_old_secret_use_within_the_minute_not_audited_again_after_another_clients_rotation(
    cli, user, oauth_client, client_secret, get_code, exchange
):
    """The rotation that makes a use "the first since" is this client's, no other's."""
    with freeze_time(FROZEN) as frozen:
        rotate(cli, overlap="1h")
        frozen.tick(300)
        assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
        frozen.tick(10)
        rotate(cli, client_id="bystander-app", overlap="1h")
        frozen.tick(10)
        assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
        assert [e.created_at.isoformat() for e in events("secret.used_old")] == [
            "2030-01-01T00:05:00+00:00"
        ]
        rows = json.loads(ok(cli, "clients", "secrets", "ifttt", "--json").stdout)
    assert [(r["status"], r["last_used_at"]) for r in rows] == [
        ("current", None),
        ("previous", "2030-01-01T00:05:00Z"),
    ]


def test_rotation_audit_rows_never_hold_a_secret(
    cli, user, oauth_client, client_secret, get_code, exchange
):
    with freeze_time(FROZEN):
        first, _ = rotate(cli, overlap="1h")
        second, _ = rotate(cli, overlap="1h")
        assert_authenticates(get_code, exchange, user, oauth_client, first["client_secret"])
        ok(cli, "clients", "expire-secret", "ifttt", "--old")
    rows = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    types = [r.event_type for r in rows if r.client_id == "ifttt"]
    for expected in (
        "client.created",
        "secret.created",
        "secret.rotated",
        "secret.expired",
        "secret.used_old",
    ):
        assert expected in types
    rotated = [r for r in rows if r.event_type == "secret.rotated"]
    assert rotated[0].details["old_secret_expires_at"].startswith("2030-01-01T01:00:00")
    dump = json.dumps([[r.event_type, r.actor, r.client_id, r.username, r.details] for r in rows])
    for secret in (client_secret, first["client_secret"], second["client_secret"]):
        assert secret not in dump


# Error cases --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("clients", "rotate-secret", "nope"),
        ("clients", "secrets", "nope"),
        ("clients", "expire-secret", "nope", "--old"),
        ("clients", "show", "nope"),
        ("clients", "update", "nope", "--name", "X"),
        ("clients", "disable", "nope"),
        ("clients", "enable", "nope"),
        ("clients", "delete", "nope", "--yes"),
        ("clients", "revoke-tokens", "nope"),
    ],
)
def test_unknown_client_is_one_line_error(cli, oauth_client, args):
    assert_one_line_error(run(cli, *args), "no client with id 'nope'")


@pytest.mark.parametrize(
    ("overlap", "message"),
    [
        ("5x", "'5x' is not a duration"),
        ("1.5h", "'1.5h' is not a duration"),
        ("", "'' is not a duration"),
        ("h", "'h' is not a duration"),
        ("-1h", "'-1h' is negative"),
        ("-0", "'-0' is negative"),
        ("99999999d", "'99999999d' is too long"),
    ],
)
def test_bad_overlap_is_one_line_error(cli, oauth_client, client_secret, overlap, message):
    result = run(cli, "clients", "rotate-secret", "ifttt", f"--overlap={overlap}")
    assert_one_line_error(result, "invalid value for --overlap", message)
    assert result.exit_code == 2
    # Nothing was rotated.
    assert len(oauth_client.live_secrets()) == 1


def test_negative_overlap_as_separate_argument_is_refused(cli, oauth_client):
    result = run(cli, "clients", "rotate-secret", "ifttt", "--overlap", "-1h")
    assert_one_line_error(result, "'-1h' is negative")


def test_expire_secret_needs_old_flag(cli, oauth_client):
    result = run(cli, "clients", "expire-secret", "ifttt")
    assert result.exit_code == 2
    assert "--old" in result.stderr


def test_rotating_public_client_is_refused(cli, app):
    make_oauth_client(client_id="phone", public=True)
    assert_one_line_error(run(cli, "clients", "rotate-secret", "phone"), "is public")


# create / list / show / delete ----------------------------------------------------


def test_create_prints_secret_that_authenticates(cli, user, get_code, exchange):
    result = ok(
        cli,
        "clients",
        "create",
        "IFTTT",
        "--redirect-uri",
        IFTTT_REDIRECT,
        "--client-id",
        "made",
        "--json",
    )
    document = json.loads(result.stdout)
    assert document["client_id"] == "made"
    assert document["scopes"] == ["ifttt"]
    assert document["redirect_uris"] == [IFTTT_REDIRECT]
    oauth_client = db.session.scalar(select(OAuth2Client).where(OAuth2Client.client_id == "made"))
    assert_authenticates(get_code, exchange, user, oauth_client, document["client_secret"])


def test_create_text_output_shows_id_and_secret(cli):
    result = ok(
        cli,
        "clients",
        "create",
        "IFTTT",
        "--redirect-uri",
        IFTTT_REDIRECT,
        "--redirect-uri",
        STAGING_REDIRECT,
        "--scope",
        "ifttt",
        "--scope",
        "extra",
    )
    assert "client_id:" in result.stdout
    assert "client_secret:" in result.stdout
    oauth_client = db.session.scalars(select(OAuth2Client)).one()
    assert oauth_client.redirect_uris == [IFTTT_REDIRECT, STAGING_REDIRECT]
    assert oauth_client.scopes == ["ifttt", "extra"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--redirect-uri", "http://example.com/cb"), "must use https"),
        (("--redirect-uri", "https://example.com/cb#frag"), "must not contain a fragment"),
        # urlsplit raises on an unclosed IPv6 bracket: a clear error, not a traceback.
        (("--redirect-uri", "https://[::1/cb"), "is not a valid URL"),
        (("--redirect-uri", IFTTT_REDIRECT, "--client-id", "ifttt"), "already exists"),
        (("--redirect-uri", IFTTT_REDIRECT, "--scope", 'bad"scope'), "invalid scope"),
    ],
)
def test_create_refuses_bad_input_with_one_line(cli, oauth_client, args, message):
    assert_one_line_error(run(cli, "clients", "create", "Other", *args), message)


def test_create_accepts_a_redirect_uri_of_2000_characters_and_refuses_2001(cli):
    def uri(length):
        base = "https://example.com/cb/"
        return base + "a" * (length - len(base))

    assert_one_line_error(
        run(cli, "clients", "create", "Long", "--redirect-uri", uri(2001)), "1 to 2000 characters"
    )
    ok(cli, "clients", "create", "Long", "--redirect-uri", uri(2000))
    db.session.expire_all()
    assert db.session.scalar(select(OAuth2Client.redirect_uris)) == [uri(2000)]


@pytest.mark.parametrize(
    ("option", "limit", "message"),
    [("name", 200, "name must be 1 to 200 characters"), ("--client-id", 64, "1-64 ASCII")],
)
def test_create_accepts_a_name_and_client_id_at_their_limit_and_refuses_one_more(
    cli, option, limit, message
):
    def args(length):
        name, extra = ("x" * length, ()) if option == "name" else ("App", (option, "c" * length))
        return ("clients", "create", name, "--redirect-uri", IFTTT_REDIRECT, *extra)

    assert_one_line_error(run(cli, *args(limit + 1)), message)
    ok(cli, *args(limit))
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(OAuth2Client)) == 1


@pytest.mark.parametrize("scope", ["a\x7fb", "a" * 101, "a b"])
def test_create_refuses_a_scope_outside_rfc_6749_scope_token(cli, scope):
    # scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): DEL (0x7F) is just past the end.
    args = ("--redirect-uri", IFTTT_REDIRECT, "--scope", scope)
    assert_one_line_error(run(cli, "clients", "create", "App", *args), "invalid scope")


def test_create_accepts_a_scope_at_the_edges_of_scope_token(cli):
    edges = ["!" + "~" * 99, "#[]"]
    scopes = [arg for scope in edges for arg in ("--scope", scope)]
    ok(cli, "clients", "create", "App", "--redirect-uri", IFTTT_REDIRECT, *scopes)
    db.session.expire_all()
    assert db.session.scalar(select(OAuth2Client.scopes)) == edges


def test_list_table_and_json(cli, oauth_client, client_secret):
    make_oauth_client(name="Staging", client_id="staging", redirect_uris=[STAGING_REDIRECT])
    table = ok(cli, "clients", "list")
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["CLIENT_ID", "NAME"]
    # Oldest first: the conftest's bystander was registered before ifttt.
    assert [line.split()[0] for line in lines[1:]] == ["bystander-app", "ifttt", "staging"]
    listed = json.loads(ok(cli, "clients", "list", "--json").stdout)
    assert [c["client_id"] for c in listed] == ["bystander-app", "ifttt", "staging"]
    assert all("secret" not in key for c in listed for key in c)
    assert client_secret not in table.stdout + json.dumps(listed)


def test_list_empty_says_none(cli):
    assert ok(cli, "clients", "list").stdout.splitlines()[-1] == "(none)"
    assert json.loads(ok(cli, "clients", "list", "--json").stdout) == []


def test_show_table_and_json(cli, oauth_client, client_secret):
    text = ok(cli, "clients", "show", "ifttt").stdout
    assert "IFTTT" in text
    assert client_secret not in text
    document = json.loads(ok(cli, "clients", "show", "ifttt", "--json").stdout)
    assert document["client_id"] == "ifttt"
    assert document["live_secrets"] == 1
    assert document["disabled"] is False


def test_delete_revokes_tokens_and_removes_client(cli, http, user, oauth_client):
    tokens = make_tokens(user, oauth_client)
    assert user_info(http, tokens["access_token"]).status_code == 200
    result = ok(cli, "clients", "delete", "ifttt", "--yes")
    assert "Deleted client ifttt" in result.stdout
    assert user_info(http, tokens["access_token"]).status_code == 401
    assert db.session.scalar(select(func.count()).select_from(TokenFamily)) == 0
    # Only that client: the bystander registered before it stays.
    assert list(db.session.scalars(select(OAuth2Client.client_id))) == ["bystander-app"]
    (revoked,) = events("family.revoked")
    assert revoked.details["reason"] == "client_deleted"
    assert len(events("client.deleted")) == 1


def test_delete_without_yes_and_no_terminal_is_refused(cli, oauth_client):
    assert_one_line_error(run(cli, "clients", "delete", "ifttt"), "--yes")
    assert db.session.scalar(select(func.count()).select_from(OAuth2Client)) == 2


# update ---------------------------------------------------------------------------


def test_update_adds_and_removes_redirect_uris(cli, http, user, login_as, oauth_client):
    extra = "https://ifttt.com/channels/acme_beta/authorize"
    ok(
        cli,
        "clients",
        "update",
        "ifttt",
        "--add-redirect-uri",
        extra,
        "--remove-redirect-uri",
        STAGING_REDIRECT,
    )
    db.session.expire_all()
    assert oauth_client.redirect_uris == [IFTTT_REDIRECT, extra]
    login_as(user)
    assert http.get(authorize_url("ifttt", redirect_uri=extra)).status_code == 200
    assert http.get(authorize_url("ifttt", redirect_uri=STAGING_REDIRECT)).status_code == 400
    (changed,) = events("client.changed")
    assert changed.details["changes"] == ["redirect_uri_added", "redirect_uri_removed"]


def test_update_refuses_removing_last_redirect_uri(cli, oauth_client):
    ok(cli, "clients", "update", "ifttt", "--remove-redirect-uri", STAGING_REDIRECT)
    result = run(cli, "clients", "update", "ifttt", "--remove-redirect-uri", IFTTT_REDIRECT)
    assert_one_line_error(result, "at least one redirect URI")
    db.session.expire_all()
    assert oauth_client.redirect_uris == [IFTTT_REDIRECT]


def test_update_refuses_unregistered_uri_removal(cli, oauth_client):
    result = run(cli, "clients", "update", "ifttt", "--remove-redirect-uri", "https://x.test/")
    assert_one_line_error(result, "is not registered")


def test_update_renames_and_sets_scopes(cli, oauth_client):
    result = ok(
        cli,
        "clients",
        "update",
        "ifttt",
        "--name",
        "IFTTT prod",
        "--scope",
        "ifttt",
        "--scope",
        "read",
        "--json",
    )
    document = json.loads(result.stdout)
    assert document["name"] == "IFTTT prod"
    assert document["scopes"] == ["ifttt", "read"]


def test_update_lifetimes_apply_to_new_tokens(
    cli, user, oauth_client, client_secret, get_code, exchange
):
    result = ok(
        cli,
        "clients",
        "update",
        "ifttt",
        "--access-token-lifetime",
        "10m",
        "--grace-period",
        "30s",
        "--json",
    )
    document = json.loads(result.stdout)
    assert (document["access_token_lifetime"], document["refresh_grace_lifetime"]) == (600, 30)
    body = assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
    assert body["expires_in"] == 600
    ok(cli, "clients", "update", "ifttt", "--reset-lifetimes")
    body = assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
    assert body["expires_in"] == 3600


def test_update_refuses_grace_longer_than_access_lifetime(cli, oauth_client):
    result = run(
        cli,
        "clients",
        "update",
        "ifttt",
        "--access-token-lifetime",
        "60s",
        "--grace-period",
        "2m",
        "--name",
        "Renamed",
    )
    assert_one_line_error(
        result, "grace period (120s) must not exceed the access token lifetime (60s)"
    )
    # Nothing was half-applied: a later change does not carry the refused values along.
    ok(cli, "clients", "update", "ifttt", "--scope", "ifttt")
    db.session.expire_all()
    assert (
        oauth_client.name,
        oauth_client.access_token_lifetime,
        oauth_client.refresh_grace_lifetime,
    ) == ("IFTTT", None, None)


def test_update_refuses_grace_longer_than_server_access_lifetime(cli, oauth_client):
    result = run(cli, "clients", "update", "ifttt", "--grace-period", "2h")
    assert_one_line_error(result, "must not exceed the access token lifetime (3600s)")


def test_update_without_changes_is_refused(cli, oauth_client):
    assert_one_line_error(run(cli, "clients", "update", "ifttt"), "nothing to change")


def test_update_bad_duration_is_one_line(cli, oauth_client):
    result = run(cli, "clients", "update", "ifttt", "--access-token-lifetime", "5x")
    assert_one_line_error(result, "invalid value for --access-token-lifetime")


# disable / enable -----------------------------------------------------------------


def test_disabled_client_can_do_nothing_until_enabled(
    cli, http, user, login_as, oauth_client, client_secret, get_code, exchange
):
    tokens = make_tokens(user, oauth_client)
    code = get_code(user, oauth_client)
    shim_server, shim_secret = client_service.register_resource_server("Shim")
    shim = basic_auth(shim_server.server_id, shim_secret)
    assert "Disabled client ifttt." in ok(cli, "clients", "disable", "ifttt").stdout
    assert "already disabled" in ok(cli, "clients", "disable", "ifttt").stdout

    login_as(user)
    page = http.get(authorize_url("ifttt"))
    assert page.status_code == 400
    assert "Location" not in page.headers
    response = exchange(code, "ifttt", client_secret)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "ifttt",
            "client_secret": client_secret,
        },
    )
    assert response.status_code == 401
    response = http.post(
        "/oauth/introspect",
        data={"token": tokens["access_token"]},
        headers=basic_auth("ifttt", client_secret),
    )
    assert response.status_code == 401
    response = http.post(
        "/oauth/revoke",
        data={"token": tokens["access_token"]},
        headers=basic_auth("ifttt", client_secret),
    )
    assert response.status_code == 401
    assert user_info(http, tokens["access_token"]).status_code == 401
    shim_view = http.post("/oauth/introspect", data={"token": tokens["access_token"]}, headers=shim)
    assert shim_view.get_json() == {"active": False}

    assert "Enabled client ifttt." in ok(cli, "clients", "enable", "ifttt").stdout
    shim_view = http.post("/oauth/introspect", data={"token": tokens["access_token"]}, headers=shim)
    assert shim_view.get_json()["active"] is True
    assert "already enabled" in ok(cli, "clients", "enable", "ifttt").stdout
    assert user_info(http, tokens["access_token"]).status_code == 200
    response = http.post(
        "/oauth/introspect",
        data={"token": tokens["access_token"]},
        headers=basic_auth("ifttt", client_secret),
    )
    assert response.get_json()["active"] is True
    assert exchange(code, "ifttt", client_secret).status_code == 200
    assert [e.details["changes"] for e in events("client.changed")] == [["disabled"], ["enabled"]]


def test_disable_and_enable_keep_the_clients_own_lifetimes(
    cli, user, oauth_client, client_secret, get_code, exchange
):
    ok(cli, "clients", "update", "ifttt", "--access-token-lifetime", "10m", "--grace-period", "30s")
    ok(cli, "clients", "disable", "ifttt")
    ok(cli, "clients", "enable", "ifttt")
    document = json.loads(ok(cli, "clients", "show", "ifttt", "--json").stdout)
    assert (document["access_token_lifetime"], document["refresh_grace_lifetime"]) == (600, 30)
    body = assert_authenticates(get_code, exchange, user, oauth_client, client_secret)
    assert body["expires_in"] == 600


def test_disabled_client_authorize_with_consent_form_is_refused(
    cli, http, user, login_as, oauth_client
):
    login_as(user)
    url = authorize_url("ifttt")
    token = csrf_token_of(http.get(url).get_data(as_text=True))
    ok(cli, "clients", "disable", "ifttt")
    response = http.post(url, data={"csrf_token": token, "decision": "allow"})
    assert response.status_code == 400
    assert "Location" not in response.headers


# users delete / show --------------------------------------------------------------


def test_users_delete_revokes_every_token(cli, http, user, oauth_client):
    other_client, _ = make_oauth_client(client_id="other")
    first = make_tokens(user, oauth_client)
    second = make_tokens(user, other_client)
    bystander = make_tokens(make_user(username="jesse"), oauth_client)
    result = ok(cli, "users", "delete", "walter", "--yes")
    assert "revoked" in result.stdout
    assert user_info(http, first["access_token"]).status_code == 401
    assert user_info(http, second["access_token"]).status_code == 401
    assert user_info(http, bystander["access_token"]).status_code == 200
    revoked = list(
        db.session.scalars(select(AuditEvent).where(AuditEvent.event_type == "family.revoked"))
    )
    assert sorted((r.client_id, r.username, r.details["reason"]) for r in revoked) == [
        ("ifttt", "walter", "user_deleted"),
        ("other", "walter", "user_deleted"),
    ]
    assert_one_line_error(run(cli, "users", "show", "walter"), "no user named 'walter'")


def test_users_show_counts_each_apps_own_live_grants(cli, user):
    """Per app, its own grants: not those of an app registered before it."""
    alpha, _ = make_oauth_client(name="Alpha", client_id="alpha")
    bravo, _ = make_oauth_client(name="Bravo", client_id="bravo")
    make_tokens(user, alpha)
    make_tokens(user, alpha)
    make_tokens(user, bravo)
    document = json.loads(ok(cli, "users", "show", "walter", "--json").stdout)
    grants = {app["client_id"]: app["live_grants"] for app in document["connected_apps"]}
    assert grants == {"alpha": 2, "bravo": 1}


def test_users_delete_unknown_user_is_one_line(cli, app):
    assert_one_line_error(run(cli, "users", "delete", "nobody", "--yes"), "no user named")


def test_users_show_lists_connected_apps(
    cli, user, oauth_client, get_code, exchange, client_secret
):
    make_oauth_client(name="Unused", client_id="unused")
    with freeze_time(FROZEN):
        code = get_code(user, oauth_client)
        assert exchange(code, "ifttt", client_secret).status_code == 200
    document = json.loads(ok(cli, "users", "show", "walter", "--json").stdout)
    assert document["username"] == "walter"
    assert document["connected_apps"] == [
        {
            "client_id": "ifttt",
            "name": "IFTTT",
            "scopes": ["ifttt"],
            "connected_at": "2030-01-01T00:00:00Z",
            "live_grants": 1,
        }
    ]
    table = ok(cli, "users", "show", "walter").stdout.splitlines()
    assert table[0].startswith("walter (Walter White)")
    assert table[1].split()[:2] == ["CLIENT_ID", "NAME"]
    assert table[2].split() == ["ifttt", "IFTTT", "ifttt", "2030-01-01T00:00:00Z", "1"]
    assert len(table) == 3


def test_generated_client_id_never_starts_with_a_dash(cli, monkeypatch):
    # token_urlsafe draws from A-Z a-z 0-9 - _: one id in 64 began with "-", and
    # `authserver clients show -Ox…` then reads the id as an option.
    drawn = ["-Oleading-dash-xxxxxxxxx", "_underscore-first-xxxxxx", "Good-id_first-xxxxxxxxx"]
    real = secrets.token_urlsafe
    monkeypatch.setattr(
        secrets,
        "token_urlsafe",
        lambda size: drawn.pop(0) if size == 18 and drawn else real(size),
    )
    document = json.loads(
        ok(cli, "clients", "create", "IFTTT", "--redirect-uri", IFTTT_REDIRECT, "--json").stdout
    )

    assert document["client_id"] == "Good-id_first-xxxxxxxxx"
    shown = json.loads(ok(cli, "clients", "show", document["client_id"], "--json").stdout)
    assert shown["client_id"] == document["client_id"]
