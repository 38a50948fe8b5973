import json

import pytest
from freezegun import freeze_time
from sqlalchemy import func
from sqlalchemy import select

from authserver.database import db
from authserver.models import AuditEvent
from authserver.models import ResourceServer
from authserver.services import clients as client_service
from tests.cli.test_clients_cli import assert_one_line_error
from tests.cli.test_clients_cli import ok
from tests.cli.test_clients_cli import run
from tests.factories import basic_auth
from tests.factories import make_tokens

FROZEN = "2030-01-01T00:00:00+00:00"


@pytest.fixture
def shim(app):
    with freeze_time(FROZEN):
        server, secret = client_service.register_resource_server("Trigger shim")
    return server.server_id, secret


@pytest.fixture
def access_token(user, oauth_client):
    with freeze_time(FROZEN):
        return make_tokens(user, oauth_client)["access_token"]


def introspect(http, server_id, secret, token):
    return http.post(
        "/oauth/introspect", data={"token": token}, headers=basic_auth(server_id, secret)
    )


def introspect_in_body(http, server_id, secret, token):
    return http.post(
        "/oauth/introspect", data={"token": token, "client_id": server_id, "client_secret": secret}
    )


def assert_introspects(http, server_id, secret, token):
    response = introspect(http, server_id, secret, token)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["active"] is True


def assert_refused(http, server_id, secret, token):
    response = introspect(http, server_id, secret, token)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def rotate(cli, server_id, overlap):
    result = ok(cli, "resource-servers", "rotate-secret", server_id, "--overlap", overlap, "--json")
    return json.loads(result.stdout), result


def rs_events(event_type):
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == event_type).order_by(AuditEvent.id)
        )
    )


def test_create_prints_secret_that_introspects(cli, http, access_token):
    with freeze_time(FROZEN):
        result = ok(cli, "resource-servers", "create", "Action shim", "--json")
        document = json.loads(result.stdout)
        assert document["id"].startswith("rs_")
        assert document["name"] == "Action shim"
        assert_introspects(http, document["id"], document["secret"], access_token)


def test_create_text_output(cli):
    result = ok(cli, "resource-servers", "create", "Action shim")
    assert "id:     rs_" in result.stdout
    assert "secret: " in result.stdout


def test_create_refuses_empty_name(cli):
    assert_one_line_error(run(cli, "resource-servers", "create", "  "), "name must be")


def test_list_table_and_json(cli, shim):
    server_id, secret = shim
    table = ok(cli, "resource-servers", "list").stdout
    header, row = table.splitlines()
    assert header.split() == ["ID", "NAME", "CREATED"]
    assert row.split() == [server_id, "Trigger", "shim", "2030-01-01T00:00:00Z"]
    listed = json.loads(ok(cli, "resource-servers", "list", "--json").stdout)
    assert listed == [
        {
            "id": server_id,
            "name": "Trigger shim",
            "disabled": False,
            "created_at": "2030-01-01T00:00:00Z",
        }
    ]
    assert secret not in table


def test_delete_stops_credentials(cli, http, shim, access_token):
    server_id, secret = shim
    with freeze_time(FROZEN):
        ok(cli, "resource-servers", "delete", server_id, "--yes")
        assert_refused(http, server_id, secret, access_token)
    assert db.session.scalar(select(func.count()).select_from(ResourceServer)) == 0
    assert len(rs_events("resource_server.deleted")) == 1


def test_both_secrets_introspect_during_overlap(cli, http, shim, access_token):
    server_id, old = shim
    with freeze_time(FROZEN):
        document, _ = rotate(cli, server_id, "1h")
        assert set(document) == {"id", "client_secret", "old_secret_expires_at"}
        assert document["old_secret_expires_at"] == "2030-01-01T01:00:00Z"
        new = document["client_secret"]
        assert_introspects(http, server_id, old, access_token)
        assert_introspects(http, server_id, new, access_token)
        # The form-body credentials go through the same check.
        response = introspect_in_body(http, server_id, old, access_token)
        assert response.get_json()["active"] is True


def test_old_secret_stops_exactly_when_overlap_ends(cli, http, shim, access_token):
    server_id, old = shim
    with freeze_time(FROZEN) as frozen:
        document, _ = rotate(cli, server_id, "30m")
        frozen.tick(1799)
        # The token lives 3600 s from FROZEN, so it stays active throughout.
        assert_introspects(http, server_id, old, access_token)
        frozen.tick(1)
        assert_refused(http, server_id, old, access_token)
        assert_introspects(http, server_id, document["client_secret"], access_token)


def test_second_rotation_ends_oldest_secret_and_says_so(cli, http, shim, access_token):
    server_id, old = shim
    with freeze_time(FROZEN):
        first, _ = rotate(cli, server_id, "1h")
        second, result = rotate(cli, server_id, "1h")
        assert "1 older secret(s) still in an overlap ended now" in result.stderr
        assert_refused(http, server_id, old, access_token)
        assert_introspects(http, server_id, first["client_secret"], access_token)
        assert_introspects(http, server_id, second["client_secret"], access_token)
        listed = json.loads(ok(cli, "resource-servers", "secrets", server_id, "--json").stdout)
    assert len(listed) == 2


def test_zero_overlap_ends_old_secret_now(cli, http, shim, access_token):
    server_id, old = shim
    with freeze_time(FROZEN):
        document, _ = rotate(cli, server_id, "0s")
        assert document["old_secret_expires_at"] == "2030-01-01T00:00:00Z"
        assert_refused(http, server_id, old, access_token)
        assert_introspects(http, server_id, document["client_secret"], access_token)


def test_secrets_listing_and_old_use_audit(cli, http, shim, access_token):
    server_id, old = shim
    with freeze_time(FROZEN) as frozen:
        document, _ = rotate(cli, server_id, "1h")
        frozen.tick(90)
        assert_introspects(http, server_id, old, access_token)
        table = ok(cli, "resource-servers", "secrets", server_id).stdout
        rows = json.loads(ok(cli, "resource-servers", "secrets", server_id, "--json").stdout)
    for secret in (old, document["client_secret"]):
        assert secret not in table
        assert secret not in json.dumps(rows)
    assert [(r["status"], r["expires_at"], r["last_used_at"]) for r in rows] == [
        ("current", None, None),
        ("previous", "2030-01-01T01:00:00Z", "2030-01-01T00:01:30Z"),
    ]
    (used,) = rs_events("secret.used_old")
    assert used.details == {"resource_server": server_id}
    assert used.client_id is None


def test_a_use_is_recorded_on_the_secret_used_and_no_other(cli, http, shim, access_token):
    # The write is keyed on the secret's id: the secrets of the resource servers
    # registered before and after (lower and higher ids) keep their own last use.
    first_id, _ = shim
    with freeze_time(FROZEN):
        second, secret = client_service.register_resource_server("Second shim")
        third, _ = client_service.register_resource_server("Third shim")
        assert_introspects(http, second.server_id, secret, access_token)

    def last_uses(server_id):
        result = ok(cli, "resource-servers", "secrets", server_id, "--json")
        return [row["last_used_at"] for row in json.loads(result.stdout)]

    assert last_uses(second.server_id) == ["2030-01-01T00:00:00Z"]
    assert last_uses(first_id) == [None]
    assert last_uses(third.server_id) == [None]


def test_expire_secret_old_ends_overlap_now(cli, http, shim, access_token):
    server_id, old = shim
    with freeze_time(FROZEN):
        document, _ = rotate(cli, server_id, "24h")
        result = ok(cli, "resource-servers", "expire-secret", server_id, "--old")
        assert f"Ended 1 previous secret(s) of {server_id}." in result.stdout
        assert_refused(http, server_id, old, access_token)
        assert_introspects(http, server_id, document["client_secret"], access_token)
        again = ok(cli, "resource-servers", "expire-secret", server_id, "--old")
    assert "has no previous secret in an overlap" in again.stdout
    (expired,) = rs_events("secret.expired")
    assert expired.details == {"resource_server": server_id, "reason": "admin"}


def test_failed_introspection_auth_is_audited(http, shim, access_token):
    server_id, _ = shim
    with freeze_time(FROZEN):
        assert_refused(http, server_id, "wrong", access_token)
    (failed,) = rs_events("client.auth_failed")
    assert failed.client_id == server_id
    assert "wrong" not in json.dumps(failed.details)


@pytest.mark.parametrize(
    "args",
    [
        ("resource-servers", "rotate-secret", "rs_nope"),
        ("resource-servers", "secrets", "rs_nope"),
        ("resource-servers", "expire-secret", "rs_nope", "--old"),
        ("resource-servers", "delete", "rs_nope", "--yes"),
    ],
)
def test_unknown_resource_server_is_one_line_error(cli, shim, args):
    assert_one_line_error(run(cli, *args), "no resource server with id 'rs_nope'")


@pytest.mark.parametrize(
    ("overlap", "message"),
    [
        ("5x", "is not a duration"),
        ("-1h", "is negative"),
        ("4000d", "is too long"),
    ],
)
def test_bad_overlap_is_one_line_error(cli, shim, overlap, message):
    server_id, _ = shim
    result = run(cli, "resource-servers", "rotate-secret", server_id, f"--overlap={overlap}")
    assert_one_line_error(result, "invalid value for --overlap", message)
    server = client_service.require_resource_server(server_id)
    assert len(server.live_secrets()) == 1


def test_delete_without_yes_and_no_terminal_is_refused(cli, shim):
    server_id, _ = shim
    assert_one_line_error(run(cli, "resource-servers", "delete", server_id), "--yes")


def test_expire_secret_needs_old_flag(cli, shim):
    result = run(cli, "resource-servers", "expire-secret", shim[0])
    assert result.exit_code == 2
    assert "--old" in result.stderr
