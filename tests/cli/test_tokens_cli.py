import json

import pytest
from sqlalchemy import select

from authserver.database import db
from authserver.models import TokenFamily
from authserver.services import clients as client_service
from authserver.services import users as user_service
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user

INFO = "/ifttt/v1/user/info"


def user_info(http, token):
    return http.get(INFO, headers={"Authorization": f"Bearer {token}"})


def issue_json(cli, *args):
    result = cli.invoke(args=["tokens", "issue", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_tokens_issue_json_works_immediately_on_user_info(cli, http, user, oauth_client):
    body = issue_json(
        cli, "--user", "walter", "--client", oauth_client.client_id, "--scope", "ifttt"
    )
    assert set(body) == {"token_type", "access_token", "refresh_token", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "ifttt"
    assert body["expires_in"] == 3600
    response = user_info(http, body["access_token"])
    assert response.status_code == 200
    assert response.get_json()["data"]["id"] == user.public_id


def test_tokens_issue_is_committed_for_other_connections(cli, app, user, oauth_client):
    body = issue_json(cli, "--user", "walter", "--client", oauth_client.client_id)
    # A fresh session (as another worker would use) sees the family.
    db.session.remove()
    families = db.session.scalars(select(TokenFamily)).all()
    assert [(f.user.username, f.scope) for f in families] == [("walter", "ifttt")]
    assert body["scope"] == "ifttt"


def test_tokens_issue_refresh_token_is_exchangeable(
    cli, http, user, oauth_client, client_secret, refresh
):
    body = issue_json(cli, "--user", "walter", "--client", oauth_client.client_id)
    response = refresh(body["refresh_token"], oauth_client.client_id, client_secret)
    assert response.status_code == 200
    assert user_info(http, response.get_json()["access_token"]).status_code == 200


def test_tokens_issue_plain_output_names_each_value(cli, http, user, oauth_client):
    result = cli.invoke(
        args=["tokens", "issue", "--user", "walter", "--client", oauth_client.client_id]
    )
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.strip().splitlines())
    assert set(lines) == {"access_token", "refresh_token", "expires_in", "scope"}
    assert user_info(http, lines["access_token"].strip()).status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody", "--client", "ifttt"], "nobody"),
        (["--user", "walter", "--client", "no-such-client"], "no-such-client"),
        (["--user", "walter", "--client", "ifttt", "--scope", "admin"], "not allowed"),
    ],
)
def test_tokens_issue_fails_cleanly_on_bad_input(cli, user, oauth_client, args, message):
    result = cli.invoke(args=["tokens", "issue", *args])
    assert result.exit_code != 0
    assert message in result.output + (result.stderr or "")
    assert "Traceback" not in result.output
    assert db.session.scalar(select(TokenFamily)) is None


def test_tokens_issue_refused_for_disabled_user(cli, user, oauth_client):
    user_service.set_disabled("walter", disabled=True)
    result = cli.invoke(args=["tokens", "issue", "--user", "walter", "--client", "ifttt"])
    assert result.exit_code == 1
    assert "disabled" in result.output + (result.stderr or "")


def test_tokens_issue_refused_for_disabled_client(cli, app, user, oauth_client):
    client_service.update_client(
        "ifttt",
        disabled=True,
        default_access=app.config["ACCESS_TOKEN_TTL"],
        default_grace=app.config["REFRESH_GRACE_SECONDS"],
    )
    result = cli.invoke(args=["tokens", "issue", "--user", "walter", "--client", "ifttt"])
    assert result.exit_code == 1
    assert "disabled" in result.output + (result.stderr or "")


def test_tokens_issue_requires_user_and_client(cli, user, oauth_client):
    result = cli.invoke(args=["tokens", "issue", "--user", "walter"])
    assert result.exit_code == 2
    assert "--client" in result.output + (result.stderr or "")


def test_tokens_revoke_by_token_ends_its_family(cli, http, user, oauth_client):
    one = make_tokens(user, oauth_client)
    other = make_tokens(user, oauth_client)
    result = cli.invoke(args=["tokens", "revoke", "--token", one["refresh_token"]])
    assert result.exit_code == 0, result.output
    assert "Revoked" in result.output
    assert user_info(http, one["access_token"]).status_code == 401
    assert user_info(http, other["access_token"]).status_code == 200
    again = cli.invoke(args=["tokens", "revoke", "--token", one["access_token"]])
    assert again.exit_code == 0
    assert "already revoked" in again.output


def test_tokens_revoke_by_user_spares_other_users(cli, http, user, oauth_client):
    other_user = make_user(username="jesse")
    mine = [make_tokens(user, oauth_client) for _ in range(2)]
    theirs = make_tokens(other_user, oauth_client)
    result = cli.invoke(args=["tokens", "revoke", "--user", "walter"])
    assert result.exit_code == 0, result.output
    assert "Revoked 2 token families." in result.output
    for body in mine:
        assert user_info(http, body["access_token"]).status_code == 401
    assert user_info(http, theirs["access_token"]).status_code == 200


def test_tokens_revoke_by_client_spares_other_clients(cli, http, user, oauth_client):
    other_client, _ = make_oauth_client(name="Other", client_id="other")
    mine = make_tokens(user, oauth_client)
    theirs = make_tokens(user, other_client)
    result = cli.invoke(args=["tokens", "revoke", "--client", "ifttt"])
    assert result.exit_code == 0, result.output
    assert "Revoked 1 token family." in result.output
    assert user_info(http, mine["access_token"]).status_code == 401
    assert user_info(http, theirs["access_token"]).status_code == 200


@pytest.mark.parametrize(
    "args",
    [[], ["--user", "walter", "--client", "ifttt"], ["--user", "walter", "--token", "x"]],
)
def test_tokens_revoke_requires_exactly_one_selector(cli, user, oauth_client, args):
    result = cli.invoke(args=["tokens", "revoke", *args])
    assert result.exit_code == 2
    assert "exactly one" in result.output + (result.stderr or "")


@pytest.mark.parametrize("token", ["unknown-token", "y" * 600])
def test_tokens_revoke_unknown_token_fails_cleanly(cli, token):
    result = cli.invoke(args=["tokens", "revoke", "--token", token])
    assert result.exit_code == 1
    assert "no such token" in result.output + (result.stderr or "")


def test_tokens_revoke_unknown_user_fails_cleanly(cli):
    result = cli.invoke(args=["tokens", "revoke", "--user", "ghost"])
    assert result.exit_code == 1
    assert "ghost" in result.output + (result.stderr or "")


def test_tokens_list_shows_live_grants_of_user(cli, user, oauth_client):
    other_user = make_user(username="jesse")
    make_tokens(user, oauth_client)
    revoked = make_tokens(user, oauth_client)
    make_tokens(other_user, oauth_client)
    cli.invoke(args=["tokens", "revoke", "--token", revoked["access_token"]])

    result = cli.invoke(args=["tokens", "list", "--user", "walter", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["user"], r["client_id"], r["scope"], r["revoked_at"]) for r in rows] == [
        ("walter", "ifttt", "ifttt", None)
    ]
    assert "access_token" not in result.output
    assert revoked["access_token"] not in result.output

    every = json.loads(
        cli.invoke(args=["tokens", "list", "--user", "walter", "--all", "--json"]).output
    )
    assert len(every) == 2
    assert sorted(r["revoke_reason"] or "" for r in every) == ["", "admin"]


def test_tokens_list_table_for_humans(cli, user, oauth_client):
    make_tokens(user, oauth_client)
    result = cli.invoke(args=["tokens", "list", "--user", "walter"])
    assert result.exit_code == 0
    header, row = result.output.strip().splitlines()
    assert header.split() == ["FAMILY", "USER", "CLIENT_ID", "SCOPE", "CREATED", "REVOKED"]
    assert row.split()[1:4] == ["walter", "ifttt", "ifttt"]


def test_tokens_list_empty_says_none(cli, user):
    result = cli.invoke(args=["tokens", "list", "--user", "walter"])
    assert result.exit_code == 0
    assert result.output.strip().endswith("(none)")


def test_tokens_list_unknown_user_fails_cleanly(cli):
    result = cli.invoke(args=["tokens", "list", "--user", "ghost"])
    assert result.exit_code == 1
    assert "ghost" in result.output + (result.stderr or "")
