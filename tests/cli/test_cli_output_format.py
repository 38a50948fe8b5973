"""CLI output for people: no None/True, one time format, ids always in the same column."""

import json
import re
from datetime import timedelta
from typing import Any

from freezegun import freeze_time

from authserver.services import clients as client_service
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user

FROZEN = "2030-01-01T00:00:00+00:00"
PYTHONISMS = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\[|'")
ANY_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[^\s]*")


def ok(cli, *args):
    result = cli.invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_clients_show_prints_words_not_python_values(cli, oauth_client):
    out = ok(cli, "clients", "show", oauth_client.client_id)
    assert not PYTHONISMS.search(out), out
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert fields["confidential"] == "yes"
    assert fields["disabled"] == "no"
    assert fields["access_token_lifetime"] == "1h (server default)"
    assert fields["refresh_grace_lifetime"] == "2m (server default)"
    assert fields["scopes"] == "ifttt"


def test_clients_show_prints_overrides_and_never_expiring_tokens(cli, oauth_client):
    ok(cli, "clients", "update", oauth_client.client_id, "--access-token-lifetime", "0")
    out = ok(cli, "clients", "show", oauth_client.client_id)
    assert "access_token_lifetime    0 (never expires)" in out
    assert not PYTHONISMS.search(out), out


def test_every_time_printed_ends_in_z(cli, user, oauth_client):
    with freeze_time(FROZEN):
        make_tokens(user, oauth_client)
        client_service.rotate_secret(
            oauth_client, overlap=timedelta(hours=24), owner_id=oauth_client.client_id
        )
        client_service.register_resource_server("Shim")
    outputs = [
        ok(cli, "audit"),
        ok(cli, "audit", "--json"),
        ok(cli, "clients", "show", oauth_client.client_id),
        ok(cli, "clients", "secrets", oauth_client.client_id),
        ok(cli, "clients", "list", "--json"),
        ok(cli, "users", "list"),
        ok(cli, "users", "show", "walter"),
        ok(cli, "tokens", "list"),
        ok(cli, "resource-servers", "list"),
    ]
    times = [t.rstrip('",') for out in outputs for t in ANY_TIME.findall(out)]
    assert times
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in times), times


def test_audit_puts_each_kind_of_id_in_its_own_column(cli, user, oauth_client):
    server, _ = client_service.register_resource_server("Shim")
    client_service.rotate_secret(server, overlap=timedelta(0), owner_id=server.server_id)
    make_tokens(user, oauth_client)
    other, _ = make_oauth_client(client_id="zapier")
    make_tokens(make_user(username="jesse"), other)
    client_service.delete_client("zapier")

    rows = json.loads(ok(cli, "audit", "--json"))
    for row in rows:
        assert "resource_server" not in row["details"], row
        assert "family" not in row["details"], row
    by_type: dict[str, Any] = {}
    for row in rows:
        by_type.setdefault(row["type"], []).append(row)
    assert {r["resource_server"] for r in by_type["resource_server.created"]} == {server.server_id}
    assert {r["resource_server"] for r in by_type["secret.rotated"]} == {server.server_id}
    # A family revoked by deleting its client names the user like any other revocation.
    (revoked,) = by_type["family.revoked"]
    assert (revoked["client_id"], revoked["username"]) == ("zapier", "jesse")
    assert isinstance(revoked["family"], int)

    table = ok(cli, "audit").splitlines()
    header = table[0]
    column = header.index("RESOURCE_SERVER")
    created = next(line for line in table if "resource_server.created" in line)
    assert created[column:].startswith(server.server_id)
    family_column = header.index("FAMILY")
    revoked_line = next(line for line in table if "family.revoked" in line)
    assert revoked_line[family_column:].split()[0] == str(revoked["family"])
